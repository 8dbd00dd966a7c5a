"""The quiet console: known third-party notices filtered, tables copied into the log file, step-based bars."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest

from xqg.tasks.console import LIGHTNING_INFO, StepProgressBar, log_to_files, quiet_third_party


def test_known_third_party_notices_are_filtered_and_others_are_not(caplog: pytest.LogCaptureFixture) -> None:
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        quiet_third_party()
        quiet_third_party()  # idempotent
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use ...", FutureWarning, stacklevel=1)
        warnings.warn(
            "Total length of `list` across ranks is zero. Please make sure ...", UserWarning, stacklevel=1
        )
        warnings.warn("something about this run", UserWarning, stacklevel=1)
    assert [str(w.message) for w in seen] == ["something about this run"]
    with caplog.at_level(logging.INFO, logger=LIGHTNING_INFO):
        logging.getLogger(LIGHTNING_INFO).info("💡 Tip: ... try installing [litlogger](https://pypi.org/...)")
        logging.getLogger(LIGHTNING_INFO).info("GPU available: False")
    assert [r.getMessage() for r in caplog.records] == ["GPU available: False"]


def test_log_to_files_reaches_file_handlers_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    logger = logging.getLogger("xqg.test_console")
    file_handler = logging.FileHandler(tmp_path / "job.log")
    console = logging.StreamHandler()
    logger.addHandler(file_handler)
    logger.addHandler(console)
    try:
        log_to_files("System  Metric  ar\nxDR     R@2kt   40.00", logger)
    finally:
        logger.removeHandler(file_handler)
        logger.removeHandler(console)
        file_handler.close()
    assert (tmp_path / "job.log").read_text() == "System  Metric  ar\nxDR     R@2kt   40.00\n"
    assert capsys.readouterr().err == ""


def test_step_bounded_training_shows_steps() -> None:
    bar = StepProgressBar()
    bar._trainer = SimpleNamespace(max_epochs=-1, max_steps=2000, global_step=372)  # type: ignore[assignment]
    assert bar._get_train_description(6) == "step 372/2000"
    bar._trainer = SimpleNamespace(max_epochs=3, max_steps=-1, global_step=5)  # type: ignore[assignment]
    assert bar._get_train_description(1).strip() == "Epoch 1/2"
