"""Tracking: the logger group's _target_ nodes, W&B off when disabled, the resolved settings go with a run."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pytorch_lightning.loggers import CSVLogger, WandbLogger

from xqg.core.errors import XqgInputError
from xqg.tasks import tracking
from xqg.tasks.tracking import (
    Tracker,
    exit_code,
    finish_loggers,
    init_arguments,
    lightning_loggers,
    run_group,
    run_name,
    save_requirements,
    start_run,
    wandb_node,
    wandb_settings,
)

CONFIG = {
    "train": {"lr": 1e-3},
    "paths": {"log_dir": "outputs"},
    "trainer": {"_target_": "pytorch_lightning.Trainer"},
}


def _logger(**wandb: object) -> dict:
    node = {
        "_target_": "pytorch_lightning.loggers.WandbLogger",
        "project": "xqg",
        "mode": "offline",
        "tags": [],
    }
    return {"wandb": {**node, **wandb}}


def test_wandb_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert wandb_node(_logger())["mode"] == "offline"
    assert wandb_node(_logger(mode="online"))["mode"] == "online"
    assert wandb_node(_logger(mode="dryrun"))["mode"] == "offline"
    assert wandb_node(_logger(mode="disabled")) is None
    assert wandb_node({}) is None  # logger=csv / logger=none
    assert wandb_node({"wandb": {"group": "study"}}) is None  # a sweep's group with logger=none
    monkeypatch.setenv("WANDB_MODE", "disabled")  # what the test suite sets: never a W&B run in tests
    assert wandb_node(_logger(mode="online")) is None
    monkeypatch.delenv("WANDB_MODE")
    with pytest.raises(XqgInputError, match=r"logger\.wandb\.mode"):
        wandb_node(_logger(mode="sometimes"))


def test_lightning_loggers_write_csv_with_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    loggers = lightning_loggers(_logger(), tmp_path, config=CONFIG)
    assert [type(lg) for lg in loggers] == [CSVLogger]
    loggers[0].log_metrics({"train/loss": 1.5}, step=0)
    loggers[0].save()
    header = (tmp_path / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "train/loss" in header
    hparams = yaml.safe_load((tmp_path / "csv" / "hparams.yaml").read_text())
    assert hparams["train"]["lr"] == 1e-3
    # W&B on (offline): a WandbLogger instantiated from the logger node, carrying the settings; it starts
    # nothing until first used
    monkeypatch.delenv("WANDB_MODE")
    node = _logger(project="p1", tags=["a"], save_dir=str(tmp_path / "wb"))
    wb = lightning_loggers(node, tmp_path, config=CONFIG, job_type="train_retriever")[1]
    assert isinstance(wb, WandbLogger) and wb._experiment is None
    assert wb._wandb_init["mode"] == "offline" and wb._wandb_init["project"] == "p1"
    assert wb._wandb_init["tags"] == ["a"] and wb._wandb_init["config"]["train"]["lr"] == 1e-3
    assert wb._wandb_init["job_type"] == "train_retriever"
    # readable name, the training group, W&B silent, and no `anonymous` (W&B warns it is deprecated)
    assert wb._wandb_init["name"] == "default-train_retriever"
    assert wb._wandb_init["group"] == "default-train"
    assert wb._wandb_init["settings"].silent is True and "anonymous" not in wb._wandb_init
    assert "quiet" not in wb._wandb_init and "save_requirements" not in wb._wandb_init
    assert wb._wandb_init["settings"].x_save_requirements is True  # a training run keeps the package list
    assert wb._wandb_init["config"]["trainer"] == {
        "_target_": "pytorch_lightning.Trainer"
    }  # carried, not built


def test_logger_targets_are_whitelisted(tmp_path: Path) -> None:
    bad = {
        "x": {"_target_": "xqg.core.artifacts.atomic_write_text", "dest": str(tmp_path / "f"), "text": "x"}
    }
    with pytest.raises(Exception, match=r"whitelist|not allowed|execution"):
        lightning_loggers(bad, tmp_path, config=CONFIG)
    assert not (tmp_path / "f").exists()


def test_tracker_is_a_recording_no_op_when_disabled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    with start_run(_logger(), config=CONFIG, job_type="evaluate") as tracker:
        assert isinstance(tracker, Tracker) and not tracker.enabled
        tracker.log_metrics({"R@2kt/macro": 44.1}, step=1)
        tracker.log_table("retrieval", ["metric", "macro"], [["R@2kt", 44.1]])
        tracker.log_image("plot", tmp_path / "p.png")
    assert [h["kind"] for h in tracker.history] == ["metrics", "table", "image"]
    assert tracker.history[0]["data"] == {"R@2kt/macro": 44.1}


def test_job_types_names_and_groups() -> None:
    node = _logger(group=None, job_type=None, name=None)["wandb"]
    assert run_name("evaluate", experiment="demo", alpha=0.01, n=5) == "demo-evaluate-a0.01-n5"
    assert run_name("train_generator", experiment="demo") == "demo-train_generator"
    # training runs in their own group, beside a sweep's study group; evaluation in the study's group
    assert run_group(node, "train_retriever", "demo") == "demo-train"
    assert (
        run_group({**node, "group": "xqg-demo-demo-1a2b3c4d"}, "train_generator")
        == "xqg-demo-demo-1a2b3c4d-train"
    )
    assert run_group({**node, "group": "study-a"}, "evaluate") == "study-a"
    assert run_group(node, "evaluate") is None
    args = init_arguments(node, stage="study", name="demo-study-x")
    assert (args["job_type"], args["name"], args["group"]) == ("study", "demo-study-x", None)
    # what the config sets wins (the conf/logger/wandb.yaml default is null: the stage decides)
    mine = init_arguments({**node, "job_type": "mine", "name": "n1", "quiet": False}, stage="evaluate")
    assert (mine["job_type"], mine["name"]) == ("mine", "n1") and "quiet" not in mine


def test_sweep_trials_leave_the_package_list_to_their_study_run() -> None:
    node = _logger()["wandb"]
    trial = {**node, "group": "xqg-demo-demo-1a2b3c4d"}  # a sweep sets its study's name as the group
    assert save_requirements(node, "evaluate") and save_requirements(trial, "study")
    assert save_requirements(trial, "train_retriever") and not save_requirements(trial, "evaluate")
    assert save_requirements({**trial, "save_requirements": True}, "evaluate")
    assert not save_requirements({**node, "save_requirements": False}, "train_generator")
    assert wandb_settings(trial, "evaluate").x_save_requirements is False
    assert "save_requirements" not in init_arguments(trial, stage="evaluate")


def test_the_logger_config_leaves_job_type_to_the_stage() -> None:
    from helpers.config import compose_config

    cfg = compose_config("train", "logger=wandb")
    assert (
        cfg.logger.wandb.job_type is None and cfg.logger.wandb.name is None and cfg.logger.wandb.quiet is True
    )


class _FakeRun:
    """A stand-in for a W&B run that records how it was finished."""

    def __init__(self) -> None:
        self.finished: list[int] = []
        self.summary: dict = {}
        self.logged: list[dict] = []
        self.id, self.name, self.group, self.job_type = "abc123", "demo-evaluate", "g", "evaluate"

    def log(self, data: dict, step: int | None = None) -> None:
        self.logged.append(data)

    def finish(self, exit_code: int = 0) -> None:
        self.finished.append(exit_code)


def test_failed_and_killed_runs_finish_with_a_non_zero_exit_code() -> None:
    assert exit_code(None) == 0 and exit_code(ValueError("x")) == 1 and exit_code(KeyboardInterrupt()) == 130
    assert exit_code(SystemExit(2)) == 2 and exit_code(SystemExit(tracking.SIGTERM_EXIT)) == 143
    assert exit_code(SystemExit(None)) == 0 and exit_code(SystemExit("bad")) == 1
    run = _FakeRun()
    with pytest.raises(RuntimeError), Tracker(run) as tracker:
        tracker.log_summary({"R@2kt/macro": 40.0})
        raise RuntimeError("search failed")
    assert run.finished == [1] and run.summary == {"R@2kt/macro": 40.0} and run.logged == []
    assert tracker.info() is None  # finished: nothing more goes to W&B
    ok = _FakeRun()
    with Tracker(ok) as tracker:
        assert tracker.info() == {
            "id": "abc123",
            "name": "demo-evaluate",
            "group": "g",
            "job_type": "evaluate",
            "dir": None,
        }
    assert ok.finished == [0]
    # Lightning's W&B runs: finished from a `finally` with the propagating exception's code
    logger = WandbLogger(project="p", mode="offline")
    logger._experiment = _FakeRun()
    with pytest.raises(SystemExit):
        try:
            raise SystemExit(tracking.SIGTERM_EXIT)  # what SIGTERM becomes (finish_on_termination)
        finally:
            finish_loggers([logger])
    assert logger._experiment.finished == [143]


def test_sigterm_ends_the_process_through_cleanup() -> None:
    import signal

    before = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    cleaned = []
    try:
        tracking.finish_on_termination()
        tracking.finish_on_termination()  # idempotent
        with pytest.raises(SystemExit) as ended:
            try:
                signal.raise_signal(signal.SIGTERM)
            finally:
                cleaned.append(True)  # `finally` blocks run: W&B runs finished, locks released
        assert ended.value.code == 143 and cleaned == [True]
        # a handler someone else set (a launcher's) is left alone
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        tracking.finish_on_termination()
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, before)
