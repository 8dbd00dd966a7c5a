"""What ``train.py`` and ``evaluate.py`` call: typed settings from the composed config, dispatch, and bad input
as one clear line instead of a traceback (exit code 2): invalid settings, bad files, missing resources, and
writes that fail because of the place (read-only or unwritable cache, full disk, quota)."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from xqg.core.errors import MissingResourceError, XqgInputError, place_error_message
from xqg.evaluation.xor_rule import ensure_punkt
from xqg.tasks import evaluate as evaluate_task
from xqg.tasks import score as score_task
from xqg.tasks import studies, train_generator, train_retriever
from xqg.tasks.config_errors import config_error_line
from xqg.tasks.console import quiet_third_party
from xqg.tasks.schema import EvaluateSettings, TrainSettings, to_settings
from xqg.tasks.tracking import finish_on_termination

log = logging.getLogger("xqg")
TRAIN_TASKS = ("retriever", "generator")


def _fail(message: str) -> None:
    log.error("%s", message)
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def _guarded(fn: Callable[[], Any]) -> Any:
    """Run ``fn``; bad input, config errors and unwritable places end the process with one line on stderr and
    exit code 2. SIGTERM ends the job through ``SystemExit`` (W&B runs finish as failed, locks are released)."""
    quiet_third_party()
    finish_on_termination()
    try:
        return fn()
    except (XqgInputError, MissingResourceError) as e:
        _fail(str(e))
    except OmegaConfBaseException as e:
        _fail(config_error_line(e) or str(e).splitlines()[0])
    except OSError as e:
        message = place_error_message(e)
        if message is None:
            raise
        _fail(message)


def check_writable_dir(path: str | Path, key: str) -> None:
    """Fail now, naming ``key``, when ``path`` (a folder to write into, maybe not yet made) is a file or lies
    in a folder this process cannot write, instead of after minutes of work."""
    p = Path(path)
    probe = p
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise XqgInputError(f"{probe} is a file, not a folder", field=key)
    if not os.access(probe, os.W_OK | os.X_OK):
        raise XqgInputError(f"{probe} is not writable (read-only or no permission)", field=key)


def _check_places(settings: TrainSettings | EvaluateSettings) -> None:
    check_writable_dir(settings.paths.cache_dir, "paths.cache_dir")
    if settings.paths.output_dir:
        check_writable_dir(settings.paths.output_dir, "paths.output_dir")


def train(cfg: DictConfig) -> float | None:
    """``task=retriever`` trains the bi-encoder; ``task=generator`` fine-tunes the xQG generator."""

    def run() -> float | None:
        settings: TrainSettings = to_settings(cfg)
        if settings.task not in TRAIN_TASKS:
            raise XqgInputError(f"unknown task {settings.task!r}; choose one of {TRAIN_TASKS}", field="task")
        _check_places(settings)
        task = train_retriever if settings.task == "retriever" else train_generator
        return task.run(settings)

    return _guarded(run)


def evaluate(cfg: DictConfig) -> float | list[float] | None:
    """Score given files (``score.*`` set) or run the retrieval pipeline; returns the sweep objective."""

    def run() -> float | list[float] | None:
        settings: EvaluateSettings = to_settings(cfg)
        _check_places(settings)
        if settings.metrics.token_cache_dir:
            check_writable_dir(settings.metrics.token_cache_dir, "metrics.token_cache_dir")
        ensure_punkt(settings.metrics.nltk_data)  # scoring comes last: a missing table must not wait for it
        if settings.score.predictions or settings.score.run:
            return score_task.run(settings)
        if settings.study.name:  # study=<name>: a research study (conf/study/, docs/studies.md)
            return studies.run(settings)
        return evaluate_task.run(settings)

    return _guarded(run)
