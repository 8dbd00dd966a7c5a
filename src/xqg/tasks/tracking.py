"""Experiment tracking from the ``logger`` group: Lightning loggers for training, a small tracker for evaluation.

The group holds ``_target_`` nodes that ``hydra.utils.instantiate`` builds (only Lightning's loggers may be
named). ``logger=wandb`` (the default) logs to Weights & Biases, offline unless ``logger.wandb.mode=online``
(``wandb sync`` uploads an offline run later); ``WANDB_MODE=disabled`` or ``logger.wandb.mode=disabled`` turns it
off. ``logger=csv`` and ``logger=none`` keep metrics in the run folder only. Training always writes Lightning's
``metrics.csv`` too, so a run folder holds its curves even without an account. The resolved settings are logged
with every run, so a run says exactly what produced it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import execution_whitelist, instantiate
from pytorch_lightning.loggers import CSVLogger, Logger, WandbLogger

from xqg.core.errors import XqgInputError
from xqg.tasks.targets import LOGGER_TARGETS, refusal_line

WANDB = "wandb"
MODES = ("offline", "online")


def wandb_node(logger: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ``logger.wandb`` node with its mode resolved, or None when W&B is off (not configured, disabled by
    ``mode`` or by ``WANDB_MODE=disabled``)."""
    node = logger.get(WANDB)
    if not isinstance(node, Mapping) or "_target_" not in node:  # e.g. logger=none with a sweep's group set
        return None
    mode = str(node.get("mode") or os.environ.get("WANDB_MODE") or "offline")
    if os.environ.get("WANDB_MODE") == "disabled" or mode in ("disabled", "off", "false"):
        return None
    mode = "offline" if mode == "dryrun" else mode
    if mode not in MODES:
        raise XqgInputError(f"must be offline, online or disabled, got {mode!r}", field="logger.wandb.mode")
    return {**node, "mode": mode}


def lightning_loggers(
    logger: Mapping[str, Any], run_dir: str | Path, *, config: Mapping[str, Any], job_type: str = "train"
) -> list[Logger]:
    """Loggers for a Lightning ``Trainer``: always a CSV logger in ``run_dir``, plus every ``logger`` node that
    is on (W&B carries ``config`` and ``job_type``); the CSV logger records ``config`` as its hparams."""
    run_dir = Path(run_dir)
    csv = CSVLogger(save_dir=str(run_dir), name="csv", version="")
    loggers: list[Logger] = [csv]
    for name, node in logger.items():
        if name == WANDB:
            node = wandb_node(logger)  # type: ignore[assignment]
            if node is None:
                continue
            node = {"job_type": job_type, **node, "config": dict(config)}
            Path(str(node.get("save_dir") or run_dir)).mkdir(parents=True, exist_ok=True)
        elif not isinstance(node, Mapping) or "_target_" not in node:
            continue
        # not recursive: the attached settings hold _target_ nodes of their own (the trainer's), never built here
        loggers.append(_build_logger(name, node))
    csv.log_hyperparams(dict(config))
    return loggers


def _build_logger(name: str, node: Mapping[str, Any]) -> Logger:
    """One ``logger`` node under exactly :data:`LOGGER_TARGETS` (not added to the entry point's list)."""
    only = execution_whitelist(list(LOGGER_TARGETS), reset=True)
    try:
        built = instantiate(node, _execution_whitelist_=only, _convert_="all", _recursive_=False)
    except (InstantiationException, TypeError) as e:  # TypeError: an argument the logger does not take
        raise XqgInputError(refusal_line(e, LOGGER_TARGETS), field=f"logger.{name}") from None
    if not isinstance(built, Logger):  # e.g. `_partial_: true`
        raise XqgInputError(
            f"must build a Lightning logger, got {type(built).__name__}", field=f"logger.{name}"
        )
    return built


def finish_loggers(loggers: Sequence[Logger]) -> None:
    """Close the W&B runs a Trainer opened (Lightning leaves them open), so the next stage in the same process,
    e.g. the generator trained after the retriever inside ``evaluate.py``, gets a run of its own."""
    for lg in loggers:
        if isinstance(lg, WandbLogger) and getattr(lg, "_experiment", None) is not None:
            lg.experiment.finish()


class Tracker:
    """Metrics, tables and images of a non-Lightning job (evaluation, sweeps); a no-op when tracking is off.

    Everything logged is also kept in :attr:`history` so callers and tests can see it without W&B.
    """

    def __init__(self, run: Any | None = None) -> None:
        self._run = run
        self.history: list[dict[str, Any]] = []

    @property
    def enabled(self) -> bool:
        return self._run is not None

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self.history.append({"kind": "metrics", "step": step, "data": dict(metrics)})
        if self._run is not None:
            self._run.log(dict(metrics), step=step)

    def log_table(self, name: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        self.history.append({"kind": "table", "name": name, "columns": list(columns), "rows": len(rows)})
        if self._run is not None:
            import wandb

            self._run.log({name: wandb.Table(columns=list(columns), data=[list(r) for r in rows])})

    def log_image(self, name: str, path: str | Path) -> None:
        self.history.append({"kind": "image", "name": name, "path": str(path)})
        if self._run is not None:
            import wandb

            self._run.log({name: wandb.Image(str(path))})

    def finish(self) -> None:
        if self._run is not None:
            self._run.finish()
            self._run = None

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish()


def start_run(logger: Mapping[str, Any], *, config: Mapping[str, Any], job_type: str) -> Tracker:
    """A W&B run with the ``logger.wandb`` settings and ``config`` attached, or a no-op tracker."""
    node = wandb_node(logger)
    if node is None:
        return Tracker(None)
    import wandb

    save_dir = Path(str(node.get("save_dir") or "outputs/wandb"))
    save_dir.mkdir(parents=True, exist_ok=True)
    run = wandb.init(
        project=node.get("project") or "xqg",
        entity=node.get("entity"),
        dir=str(save_dir),
        group=node.get("group"),
        job_type=job_type,
        tags=list(node.get("tags") or []),
        mode=node["mode"],
        config=dict(config),
        reinit="finish_previous",
    )
    return Tracker(run)
