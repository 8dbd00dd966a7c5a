"""What ``train.py`` and ``evaluate.py`` call: dispatch on the config, turn input errors into one clear line."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig

from xqg.core.errors import MissingResourceError, XqgInputError

log = logging.getLogger("xqg")


def _guarded(fn: Callable[[DictConfig], Any], cfg: DictConfig) -> Any:
    try:
        return fn(cfg)
    except (XqgInputError, MissingResourceError) as e:
        log.error("%s", e)
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def train(cfg: DictConfig) -> float | None:
    """``task=retriever`` trains the bi-encoder; ``task=generator`` fine-tunes the xQG generator."""
    if cfg.task == "retriever":
        from xqg.tasks.train_retriever import run
    elif cfg.task == "generator":
        from xqg.tasks.train_generator import run
    else:
        raise SystemExit(f"error: unknown task {cfg.task!r} (retriever | generator)")
    return _guarded(run, cfg)


def evaluate(cfg: DictConfig) -> float | None:
    """Score given files (``score.*`` set) or run the retrieval pipeline; returns the sweep objective."""
    score = cfg.get("score") or {}
    if score.get("predictions") or score.get("run"):
        from xqg.tasks.score import score_from_config

        return _guarded(score_from_config, cfg)
    from xqg.tasks.evaluate import run

    return _guarded(run, cfg)
