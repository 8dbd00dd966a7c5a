"""No code runs from a config: every ``_target_`` a config can name is checked against named classes
(:mod:`xqg.tasks.targets`), nested ones included, and a refusal is one line with exit code 2, never a traceback.

One test per finding of the security review (issue 17), run as a user would (``train.py`` / ``evaluate.py`` in
a subprocess), each asserting that the payload never ran; then the builders directly.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from hydra.errors import InstantiationException
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger

from helpers.config import compose_config, settings
from helpers.paths import REPO
from xqg.core.errors import XqgInputError
from xqg.tasks.builders import build_callbacks, build_trainer
from xqg.tasks.targets import (
    CALLBACK_TARGETS,
    EVALUATE_TARGETS,
    LOGGER_TARGETS,
    TRAIN_TARGETS,
    TRAINER_TARGETS,
    check_node_targets,
    refusal_line,
    run_entry_point,
)
from xqg.tasks.tracking import lightning_loggers

WRITE = "xqg.core.artifacts.atomic_write_text"  # writes a file of the caller's choosing: the review's payload
# Names a config must never reach: code runners, and a method of an allowed package (not a named class).
FORBIDDEN = [
    "os.system",
    "builtins.eval",
    "subprocess.run",
    "pytorch_lightning.callbacks.Callback.__init__",
    WRITE,
]


class _Payload:
    """Unpickling it creates the marker file (what ``torch.load(weights_only=False)`` of a hostile file does)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.marker, "w"))


def _run(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run(
        [sys.executable, str(REPO / script), *args, f"paths.log_dir={cwd / 'logs'}"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _refused_in_one_line(done: subprocess.CompletedProcess[str], *expected: str) -> str:
    errors = [ln for ln in done.stderr.splitlines() if ln.startswith("error: ")]
    assert done.returncode == 2 and "Traceback" not in done.stderr and len(errors) == 1, done.stderr[-3000:]
    for text in expected:
        assert text in errors[0], errors[0]
    return errors[0]


# ---- the review's exploits, through the entry points ------------------------------------------------------------


@pytest.mark.slow
def test_train_hydra_callback_cannot_unpickle_a_payload(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    torch.save(_Payload(marker), tmp_path / "payload.pt")
    done = _run(
        "train.py",
        "task=retriever",
        "+hydra.callbacks.x._target_=torch.load",
        f"+hydra.callbacks.x._args_=['{tmp_path / 'payload.pt'}']",
        "+hydra.callbacks.x.weights_only=false",
        cwd=tmp_path,
    )
    _refused_in_one_line(done, "config key 'hydra.callbacks.x'", "'torch.load'", "Allowed here: nothing")
    assert not marker.exists()


@pytest.mark.slow
def test_evaluate_hydra_callback_cannot_write_a_file(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    done = _run(
        "evaluate.py",
        f"+hydra.callbacks.x._target_={WRITE}",
        f"+hydra.callbacks.x.dest={marker}",
        "+hydra.callbacks.x.text=pwned",
        cwd=tmp_path,
    )
    _refused_in_one_line(done, "config key 'hydra.callbacks.x'", WRITE, EVALUATE_TARGETS[0])
    assert not marker.exists()


@pytest.mark.slow
def test_sweep_sampler_cannot_run_a_command(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    done = _run(
        "evaluate.py",
        "-m",
        "sweep=demo",
        "hydra.sweeper.sampler._target_=os.system",
        f"+hydra.sweeper.sampler.command='touch {marker}'",
        cwd=tmp_path,
    )
    _refused_in_one_line(done, "config key 'hydra.sweeper.sampler'", "'os.system'", "optuna.samplers")
    assert not marker.exists()


@pytest.mark.slow
def test_trainer_target_is_refused_before_any_work(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    done = _run(
        "train.py",
        "task=retriever",
        "trainer._target_=subprocess.run",
        f"+trainer.args=[touch,{marker}]",
        cwd=tmp_path,
    )
    _refused_in_one_line(done, "field 'trainer'", "'subprocess.run'", "pytorch_lightning.Trainer")
    assert not marker.exists() and not (tmp_path / "logs" / "cache").exists()  # nothing built first


@pytest.mark.slow
def test_logging_config_cannot_name_a_factory(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    (tmp_path / "conf" / "experiment").mkdir(parents=True)
    (tmp_path / "conf" / "experiment" / "evil.yaml").write_text(
        "# @package _global_\n"
        "hydra:\n  job_logging:\n    handlers:\n      x:\n"
        f"        (): subprocess.call\n        args: [touch, {marker}]\n"
    )
    done = _run(
        "train.py", "task=retriever", "--config-dir", str(tmp_path / "conf"), "experiment=evil", cwd=tmp_path
    )
    _refused_in_one_line(done, "config key 'hydra.logging'", "'subprocess.call'")
    assert not marker.exists()


# ---- the builders, directly ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", FORBIDDEN)
def test_trainer_callbacks_and_loggers_refuse_anything_but_named_classes(tmp_path: Path, target: str) -> None:
    marker = tmp_path / "pwned"
    args = {"dest": str(marker), "text": "x"} if target == WRITE else {}
    with pytest.raises(
        XqgInputError,
        match=r"field 'trainer'.*Hydra execution whitelist.*Allowed here: pytorch_lightning\.Trainer\.",
    ):
        build_trainer({"_target_": target, **args})
    with pytest.raises(XqgInputError, match=r"field 'callbacks\.x'"):
        build_callbacks({"x": {"_target_": target, **args}})
    with pytest.raises(XqgInputError, match=r"field 'logger\.x'"):
        lightning_loggers({"x": {"_target_": target, **args}}, tmp_path / "run", config={})
    assert not marker.exists()


def test_a_nested_target_inside_an_allowed_node_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = {"_target_": WRITE, "dest": str(marker), "text": "x"}
    with pytest.raises(XqgInputError, match=rf"field 'callbacks\.x'.*'{WRITE}'"):
        build_callbacks(
            {"x": {"_target_": "pytorch_lightning.callbacks.ModelCheckpoint", "filename": payload}}
        )
    with pytest.raises(XqgInputError, match=r"field 'trainer'"):
        build_trainer({"_target_": "pytorch_lightning.Trainer", "plugins": [payload]}, logger=False)
    # a logger node is built non-recursively: a nested node stays data and never runs
    try:
        lightning_loggers(
            {
                "x": {
                    "_target_": "pytorch_lightning.loggers.CSVLogger",
                    "save_dir": str(tmp_path),
                    "prefix": payload,
                }
            },
            tmp_path / "run",
            config={},
        )
    except XqgInputError:
        pass
    assert not marker.exists()


def test_partial_and_package_prefix_tricks_are_refused(tmp_path: Path) -> None:
    with pytest.raises(XqgInputError, match="must build a Lightning callback"):
        build_callbacks({"x": {"_target_": "pytorch_lightning.callbacks.EarlyStopping", "_partial_": True}})
    with pytest.raises(XqgInputError, match="must build a Lightning Trainer"):
        build_trainer({"_target_": "pytorch_lightning.Trainer", "_partial_": True})
    for target in (
        "pytorch_lightning.callbacks.LambdaCallback",  # runs callables: not on the list
        "pytorch_lightning.callbacks.model_checkpoint.os.system",  # an alias through an allowed module
        "pytorch_lightning.callbacks.ModelCheckpoint.load_state_dict",  # a method of an allowed class
    ):
        with pytest.raises(XqgInputError, match=r"field 'callbacks\.x'"):
            build_callbacks({"x": {"_target_": target}})


def test_the_named_classes_still_build(tmp_path: Path) -> None:
    callbacks = build_callbacks(
        {
            "ckpt": {"_target_": "pytorch_lightning.callbacks.ModelCheckpoint"},
            "stop": {"_target_": "pytorch_lightning.callbacks.EarlyStopping", "monitor": "val/loss"},
            "off": None,
        },
        checkpoint_dir=tmp_path / "ckpt",
    )
    assert isinstance(callbacks[0], ModelCheckpoint) and callbacks[0].dirpath == str(tmp_path / "ckpt")
    assert isinstance(callbacks[1], EarlyStopping)
    loggers = lightning_loggers(
        {"csv": {"_target_": "pytorch_lightning.loggers.CSVLogger", "save_dir": str(tmp_path / "more")}},
        tmp_path / "run",
        config={"seed": 1},
    )
    assert [type(lg) for lg in loggers] == [CSVLogger, CSVLogger]
    s = settings("train", "trainer.max_steps=2")
    assert build_trainer(s.trainer, logger=False, default_root_dir=str(tmp_path)).max_steps == 2


def test_the_lists_name_classes_only() -> None:
    for targets in (TRAIN_TARGETS, EVALUATE_TARGETS, TRAINER_TARGETS, CALLBACK_TARGETS, LOGGER_TARGETS):
        assert all("*" not in t for t in targets)
    assert "pytorch_lightning.callbacks.ModelCheckpoint" in CALLBACK_TARGETS  # conf/callbacks/default.yaml
    assert "pytorch_lightning.loggers.WandbLogger" in LOGGER_TARGETS  # conf/logger/wandb.yaml
    assert "xqg.tasks.study_report.StudyReportCallback" in EVALUATE_TARGETS  # sweeps/*.yaml


@pytest.mark.parametrize("name", ["train", "evaluate"])
def test_every_shipped_config_passes_the_target_check(name: str) -> None:
    for extra in ([], ["logger=csv"], ["callbacks=none"], ["trainer=ddp"]):
        check_node_targets(compose_config(name, *extra))
    for sweep in ("alpha_n", "alpha_log_n", "alpha_n_multi", "grid_paper", "demo"):
        check_node_targets(compose_config("evaluate", f"sweep={sweep}"))


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("trainer._target_=builtins.eval", "trainer"),
        ("+trainer.plugins=[{_target_: subprocess.run}]", r"trainer\.plugins\[0\]"),
        ("+callbacks.x._target_=pytorch_lightning.callbacks.LambdaCallback", r"callbacks\.x"),
        (
            "+callbacks.model_checkpoint.filename={_target_: os.getcwd}",
            r"callbacks\.model_checkpoint\.filename",
        ),
        ("logger=csv", None),
        ("+logger.x._target_=${seed}", r"logger\.x"),  # an interpolated target is refused, not resolved
    ],
)
def test_check_node_targets_names_the_config_key(override: str, key: str | None) -> None:
    cfg = compose_config("train", override)
    if key is None:
        check_node_targets(cfg)
        return
    with pytest.raises(XqgInputError, match=rf"field '{key}': target .* is not allowed here; allowed: "):
        check_node_targets(cfg)


def test_a_refusal_outside_the_task_is_one_line_and_exit_code_2(capsys: pytest.CaptureFixture[str]) -> None:
    def refused() -> None:
        raise InstantiationException(
            "Target 'os.system' is not in the Hydra execution whitelist.\nPass _execution_whitelist_ from trusted"
            " code to allow expected targets.\nfull_key: hydra.callbacks.x"
        )

    def wrapped() -> None:  # Hydra's logging config wraps its refusal in a ValueError
        try:
            refused()
        except InstantiationException as e:
            raise ValueError("Unable to configure handler 'x'") from e

    for main in (refused, wrapped):
        with pytest.raises(SystemExit) as info:
            run_entry_point(main, ["a.B"])
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert err == (
            "error: config key 'hydra.callbacks.x': Target 'os.system' is not in the Hydra execution whitelist."
            " Allowed here: a.B.\n"
        )
    assert "HYDRA_FULL_ERROR" not in os.environ


def test_other_errors_keep_hydras_report(capsys: pytest.CaptureFixture[str]) -> None:
    def broken() -> None:
        raise RuntimeError("boom")

    with pytest.raises(SystemExit) as info:
        run_entry_point(broken, [])
    assert info.value.code == 1 and "RuntimeError: boom" in capsys.readouterr().err


def test_refusal_line_of_an_error_without_key() -> None:
    assert refusal_line(ValueError("bad value.\nmore detail")) == "bad value."
