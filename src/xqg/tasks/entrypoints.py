"""What ``train.py`` and ``evaluate.py`` call: typed settings from the composed config, dispatch, and bad input
as one clear line instead of a traceback."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig

from xqg.core.errors import MissingResourceError, XqgInputError
from xqg.tasks import evaluate as evaluate_task
from xqg.tasks import score as score_task
from xqg.tasks import train_generator, train_retriever
from xqg.tasks.schema import EvaluateSettings, TrainSettings, to_settings

log = logging.getLogger("xqg")
TRAIN_TASKS = ("retriever", "generator")


def _guarded(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except (XqgInputError, MissingResourceError) as e:
        log.error("%s", e)
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def train(cfg: DictConfig) -> float | None:
    """``task=retriever`` trains the bi-encoder; ``task=generator`` fine-tunes the xQG generator."""

    def run() -> float | None:
        settings: TrainSettings = to_settings(cfg)
        if settings.task not in TRAIN_TASKS:
            raise XqgInputError(f"unknown task {settings.task!r}; choose one of {TRAIN_TASKS}", field="task")
        task = train_retriever if settings.task == "retriever" else train_generator
        return task.run(settings)

    return _guarded(run)


def evaluate(cfg: DictConfig) -> float | list[float] | None:
    """Score given files (``score.*`` set) or run the retrieval pipeline; returns the sweep objective."""

    def run() -> float | list[float] | None:
        settings: EvaluateSettings = to_settings(cfg)
        if settings.score.predictions or settings.score.run:
            return score_task.run(settings)
        return evaluate_task.run(settings)

    return _guarded(run)
