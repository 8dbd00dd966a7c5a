"""Tracking: the logger group's _target_ nodes, W&B off when disabled, the resolved settings go with a run."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pytorch_lightning.loggers import CSVLogger, WandbLogger

from xqg.core.errors import XqgInputError
from xqg.tasks.tracking import Tracker, lightning_loggers, start_run, wandb_node

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
