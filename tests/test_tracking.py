"""Tracking: logger=wandb|csv|none from the config, W&B off when disabled, the resolved config goes with a run."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from xqg.core.errors import XqgInputError
from xqg.tasks.tracking import Tracker, lightning_loggers, resolved_config, start_run, wandb_mode


def _cfg(**logger: object) -> object:
    return OmegaConf.create(
        {
            "paths": {"output_dir": "${hydra:runtime.output_dir}", "log_dir": "outputs"},
            "train": {"lr": 1e-3, "scaled": "${train.lr}"},
            "logger": {"backend": "wandb", "project": "xqg", "mode": "offline", "tags": [], **logger},
        }
    )


def test_backend_and_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert wandb_mode(_cfg()) == "offline"
    assert wandb_mode(_cfg(mode="online")) == "online"
    assert wandb_mode(_cfg(mode="disabled")) is None
    assert wandb_mode(_cfg(backend="csv")) is None
    assert wandb_mode(_cfg(backend="none")) is None
    monkeypatch.setenv("WANDB_MODE", "disabled")  # what the test suite sets: never a W&B run in tests
    assert wandb_mode(_cfg(mode="online")) is None
    with pytest.raises(XqgInputError, match=r"logger\.backend"):
        wandb_mode(_cfg(backend="tensorboard"))
    monkeypatch.delenv("WANDB_MODE")
    with pytest.raises(XqgInputError, match=r"logger\.mode"):
        wandb_mode(_cfg(mode="sometimes"))


def test_resolved_config_keeps_what_cannot_be_resolved_outside_hydra() -> None:
    out = resolved_config(_cfg())
    assert out["train"]["scaled"] == 1e-3  # resolved
    assert out["paths"]["output_dir"] == "${hydra:runtime.output_dir}"  # kept as written


def test_lightning_loggers_write_csv_with_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pytorch_lightning.loggers import CSVLogger, WandbLogger

    monkeypatch.setenv("WANDB_MODE", "disabled")
    loggers = lightning_loggers(_cfg(), tmp_path)
    assert [type(lg) for lg in loggers] == [CSVLogger]
    loggers[0].log_metrics({"train/loss": 1.5}, step=0)
    loggers[0].save()
    header = (tmp_path / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "train/loss" in header
    hparams = yaml.safe_load((tmp_path / "csv" / "hparams.yaml").read_text())
    assert hparams["train"]["scaled"] == 1e-3
    # W&B on (offline): a WandbLogger configured from cfg.logger, carrying the resolved config; it starts
    # nothing until first used
    monkeypatch.delenv("WANDB_MODE")
    loggers = lightning_loggers(_cfg(project="p1", tags=["a"], save_dir=str(tmp_path / "wb")), tmp_path)
    wb = loggers[1]
    assert isinstance(wb, WandbLogger) and wb._experiment is None
    assert wb._wandb_init["mode"] == "offline" and wb._wandb_init["project"] == "p1"
    assert wb._wandb_init["tags"] == ["a"] and wb._wandb_init["config"]["train"]["lr"] == 1e-3


def test_tracker_is_a_recording_no_op_when_disabled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    with start_run(_cfg(), job_type="evaluate") as tracker:
        assert isinstance(tracker, Tracker) and not tracker.enabled
        tracker.log_metrics({"R@2kt/macro": 44.1}, step=1)
        tracker.log_table("retrieval", ["metric", "macro"], [["R@2kt", 44.1]])
        tracker.log_image("plot", tmp_path / "p.png")
    assert [h["kind"] for h in tracker.history] == ["metrics", "table", "image"]
    assert tracker.history[0]["data"] == {"R@2kt/macro": 44.1}
