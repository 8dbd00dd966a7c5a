"""Experiment tracking from ``cfg.logger``: Lightning loggers for training, a small tracker for evaluation.

``logger=wandb`` (the default) logs to Weights & Biases, offline unless ``logger.mode=online`` (``wandb sync``
uploads an offline run later); ``WANDB_MODE=disabled`` or ``logger.mode=disabled`` turns it off.
``logger=csv`` and ``logger=none`` keep metrics in the run folder only (Lightning's ``metrics.csv``). Training
always writes the CSV too, so a run folder holds its curves even without an account. The resolved config is
logged with every run, so a run says exactly what produced it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

log = logging.getLogger(__name__)
BACKENDS = ("wandb", "csv", "none")


def resolved_config(cfg: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    """The config as plain JSON-able data, interpolations resolved where possible (``${hydra:...}`` cannot be
    resolved outside a Hydra app: such values are kept as written)."""
    if not isinstance(cfg, DictConfig):
        return dict(cfg)
    try:
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    except Exception:
        return _resolve_partial(cfg)  # type: ignore[return-value]


def _resolve_partial(node: Any) -> Any:
    if isinstance(node, DictConfig):
        raw = OmegaConf.to_container(node, resolve=False)
        out = {}
        for key in node.keys():
            try:
                out[str(key)] = _resolve_partial(node[key])
            except Exception:
                out[str(key)] = raw[key]  # type: ignore[index]
        return out
    if isinstance(node, ListConfig):
        raw_list = OmegaConf.to_container(node, resolve=False)
        items = []
        for i in range(len(node)):
            try:
                items.append(_resolve_partial(node[i]))
            except Exception:
                items.append(raw_list[i])  # type: ignore[index]
        return items
    return node


def _logger_cfg(cfg: DictConfig) -> DictConfig:
    lc = cfg.get("logger")
    return lc if lc is not None else OmegaConf.create({"backend": "none"})


def _backend(lc: DictConfig) -> str:
    backend = str(lc.get("backend", "none"))
    if backend not in BACKENDS:
        from xqg.core.errors import XqgInputError

        raise XqgInputError(
            f"unknown logger backend {backend!r}; choose one of {BACKENDS}", field="logger.backend"
        )
    return backend


def wandb_mode(cfg: DictConfig) -> str | None:
    """``offline``/``online`` when W&B should run, ``None`` when it is off (other backend or disabled)."""
    lc = _logger_cfg(cfg)
    if _backend(lc) != "wandb":
        return None
    mode = str(lc.get("mode") or os.environ.get("WANDB_MODE") or "offline")
    if os.environ.get("WANDB_MODE") == "disabled" or mode in ("disabled", "off", "false"):
        return None
    if mode == "dryrun":
        mode = "offline"
    if mode not in ("offline", "online"):
        from xqg.core.errors import XqgInputError

        raise XqgInputError(f"must be offline, online or disabled, got {mode!r}", field="logger.mode")
    return mode


def _safe_str(lc: DictConfig, key: str, default: str | None = None) -> str | None:
    try:
        v = lc.get(key)
    except Exception:
        return default
    return default if v is None else str(v)


def lightning_loggers(cfg: DictConfig, run_dir: str | Path, *, job_type: str = "train") -> list[Any]:
    """Loggers for a Lightning ``Trainer``: always a CSV logger in ``run_dir``, plus W&B when it is on."""
    from pytorch_lightning.loggers import CSVLogger, WandbLogger

    lc = _logger_cfg(cfg)
    run_dir = Path(run_dir)
    loggers: list[Any] = [CSVLogger(save_dir=str(run_dir), name="csv", version="")]
    mode = wandb_mode(cfg)
    config = resolved_config(cfg)
    if mode is not None:
        save_dir = Path(_safe_str(lc, "save_dir", str(run_dir)) or run_dir)
        save_dir.mkdir(parents=True, exist_ok=True)
        loggers.append(
            WandbLogger(
                project=_safe_str(lc, "project", "xqg"),
                entity=_safe_str(lc, "entity"),
                save_dir=str(save_dir),
                group=_safe_str(lc, "group"),
                job_type=_safe_str(lc, "job_type", job_type),
                tags=list(lc.get("tags") or []),
                mode=mode,
                config=config,
            )
        )
    for lg in loggers:
        if isinstance(lg, CSVLogger):
            lg.log_hyperparams(config)
    return loggers


def finish_loggers(loggers: Sequence[Any] | Any) -> None:
    """Close the W&B runs a Trainer opened (Lightning leaves them open), so the next stage in the same process,
    e.g. the generator trained after the retriever inside ``evaluate.py``, gets a run of its own."""
    from pytorch_lightning.loggers import WandbLogger

    for lg in loggers if isinstance(loggers, list | tuple) else [loggers]:
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


def start_run(cfg: DictConfig, job_type: str) -> Tracker:
    """A W&B run configured from ``cfg.logger`` with the resolved config attached, or a no-op tracker."""
    mode = wandb_mode(cfg)
    if mode is None:
        return Tracker(None)
    import wandb

    lc = _logger_cfg(cfg)
    save_dir = Path(_safe_str(lc, "save_dir", "outputs/wandb") or "outputs/wandb")
    save_dir.mkdir(parents=True, exist_ok=True)
    run = wandb.init(
        project=_safe_str(lc, "project", "xqg"),
        entity=_safe_str(lc, "entity"),
        dir=str(save_dir),
        group=_safe_str(lc, "group"),
        job_type=job_type,
        tags=list(lc.get("tags") or []),
        mode=mode,
        config=resolved_config(cfg),
        reinit="finish_previous",
    )
    return Tracker(run)
