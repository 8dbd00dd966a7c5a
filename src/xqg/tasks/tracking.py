"""Experiment tracking from the ``logger`` group: Lightning loggers for training, a small tracker for evaluation.

The group holds ``_target_`` nodes that ``hydra.utils.instantiate`` builds (only Lightning's loggers may be
named). ``logger=wandb`` (the default) logs to Weights & Biases, offline unless ``logger.wandb.mode=online``
(``wandb sync`` uploads an offline run later); ``WANDB_MODE=disabled`` or ``logger.wandb.mode=disabled`` turns it
off. ``logger=csv`` and ``logger=none`` keep metrics in the run folder only. Training always writes Lightning's
``metrics.csv`` too, so a run folder holds its curves even without an account. The resolved settings are logged
with every run, so a run says exactly what produced it.

How the runs are organised in W&B (each left to the ``logger.wandb`` node when it sets the key):

* ``job_type`` is the stage: ``train_retriever``, ``train_generator``, ``evaluate`` or ``study``;
* ``name`` is readable: ``<experiment>-<stage>`` plus the fusion setting, e.g. ``demo-evaluate-a0.01-n5``;
* ``group``: training runs go to ``<group>-train`` (``<experiment>-train`` without a group), so the runs a sweep
  trains on its first trial never sit among its trials; a sweep sets ``group`` to its study's name, so every
  study (and a resumed one) is one group with its trials and its ``study`` run;
* ``quiet: true`` (the default) turns W&B's own console output off (banners, the one-point sparkline history of
  each run); xqg logs one line per finished run instead (name, id, folder, how to upload it);
* a run ended by an exception, Ctrl-C or SIGTERM is finished with a non-zero exit code (W&B shows it failed).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import execution_whitelist, instantiate
from pytorch_lightning.loggers import CSVLogger, Logger, WandbLogger

from xqg.core.errors import XqgInputError
from xqg.tasks.targets import LOGGER_TARGETS, refusal_line

log = logging.getLogger(__name__)
WANDB = "wandb"
MODES = ("offline", "online")
XQG_KEYS = ("quiet", "save_requirements")  # keys of logger.wandb that xqg reads; W&B does not take them
TRAIN_GROUP_SUFFIX = "-train"
SIGTERM_EXIT = 128 + int(signal.SIGTERM)


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


# -- names, groups, job types -----------------------------------------------------------------------------------
def experiment_name() -> str:
    """The ``experiment`` group chosen for the running Hydra job (``default`` when none or outside Hydra)."""
    if HydraConfig.initialized():
        choice = HydraConfig.get().runtime.choices.get("experiment")
        if choice:
            return str(choice)
    return "default"


def run_name(
    stage: str, *, experiment: str | None = None, alpha: float | None = None, n: int | None = None
) -> str:
    """``<experiment>-<stage>[-a<alpha>][-n<n>]``, e.g. ``demo-evaluate-a0.01-n5``."""
    parts = [experiment or experiment_name(), stage]
    if alpha is not None:
        parts.append(f"a{float(alpha):g}")
    if n is not None:
        parts.append(f"n{int(n)}")
    return "-".join(parts)


def run_group(node: Mapping[str, Any], stage: str, experiment: str | None = None) -> str | None:
    """The W&B group of a ``stage`` run: training stages in ``<group or experiment>-train``, the others in
    ``group`` (a sweep's study name; none outside a sweep)."""
    group = node.get("group")
    if stage.startswith("train"):
        return f"{group or experiment or experiment_name()}{TRAIN_GROUP_SUFFIX}"
    return str(group) if group else None


def init_arguments(node: Mapping[str, Any], *, stage: str, name: str | None = None) -> dict[str, Any]:
    """The ``logger.wandb`` node as W&B arguments: xqg's own keys removed, ``job_type``, ``name`` and ``group``
    filled in where the node leaves them null (:func:`run_group`)."""
    out = {k: v for k, v in node.items() if k not in XQG_KEYS}
    out["job_type"] = node.get("job_type") or stage
    out["name"] = node.get("name") or name or run_name(stage)
    out["group"] = run_group(node, stage)
    return out


def save_requirements(node: Mapping[str, Any], stage: str) -> bool:
    """Whether a run stores the installed packages (``requirements.txt``): ``logger.wandb.save_requirements``
    true/false, or ``auto`` (the default): every run but a sweep's trials (``evaluate`` runs in a study's group),
    whose study run stores the same list. Listing the packages is most of an offline run's start: 0.28 s of it
    against 0.08 s without, on 2 CPU cores, for every trial."""
    value = node.get("save_requirements", "auto")
    if value in (None, "auto"):
        return not (stage == "evaluate" and run_group(node, stage))
    return bool(value)


def wandb_settings(node: Mapping[str, Any], stage: str = "") -> Any:
    """``wandb.Settings``: silent unless ``logger.wandb.quiet=false`` (then W&B prints its usual output), and
    the package list per :func:`save_requirements`."""
    import wandb

    return wandb.Settings(
        silent=bool(node.get("quiet", True)), x_save_requirements=save_requirements(node, stage)
    )


# -- exit codes -------------------------------------------------------------------------------------------------
def exit_code(exc: BaseException | None) -> int:
    """The exit code a run ended by ``exc`` gets in W&B: 0 for none, its code for ``SystemExit`` (1 when it has
    none but the run failed), 130 for Ctrl-C, 1 for any other exception."""
    if exc is None:
        return 0
    if isinstance(exc, SystemExit):
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    if isinstance(exc, KeyboardInterrupt):
        return 130
    return 1


def _raise_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(SIGTERM_EXIT)


def finish_on_termination() -> None:
    """Make SIGTERM (``kill``, a scheduler's timeout) end this process through ``SystemExit(143)`` so cleanup
    runs: W&B runs are finished as failed and locks released. Only in the main thread and only where no handler
    is set (a launcher's own handler stays); idempotent."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None, _raise_on_sigterm):
        signal.signal(signal.SIGTERM, _raise_on_sigterm)


def _announce(run: Any) -> None:
    """One line per finished W&B run, instead of W&B's banners and history sparklines."""
    try:
        offline = bool(run.settings._offline)
        where = run.settings.sync_dir
    except AttributeError:  # a stand-in run (tests) or a W&B without these settings
        return
    how = f"upload with `wandb sync {where}`" if offline else f"at {run.url}"
    log.info("W&B run %s (%s, id %s) in %s; %s", run.name, run.job_type, run.id, where, how)


# -- Lightning loggers ------------------------------------------------------------------------------------------
def lightning_loggers(
    logger: Mapping[str, Any], run_dir: str | Path, *, config: Mapping[str, Any], job_type: str = "train"
) -> list[Logger]:
    """Loggers for a Lightning ``Trainer``: always a CSV logger in ``run_dir``, plus every ``logger`` node that
    is on (W&B carries ``config``, the stage ``job_type``, a readable name and the training group); the CSV
    logger records ``config`` as its hparams."""
    run_dir = Path(run_dir)
    csv = CSVLogger(save_dir=str(run_dir), name="csv", version="")
    loggers: list[Logger] = [csv]
    for name, node in logger.items():
        settings = None
        if name == WANDB:
            wandb = wandb_node(logger)
            if wandb is None:
                continue
            settings = wandb_settings(wandb, job_type)
            node = {**init_arguments(wandb, stage=job_type), "config": dict(config)}
            Path(str(node.get("save_dir") or run_dir)).mkdir(parents=True, exist_ok=True)
        elif not isinstance(node, Mapping) or "_target_" not in node:
            continue
        # not recursive: the attached settings hold _target_ nodes of their own (the trainer's), never built here
        built = _build_logger(name, node)
        if isinstance(built, WandbLogger):
            # Lightning always passes `anonymous` (None by default): W&B then warns the setting is deprecated
            built._wandb_init.pop("anonymous", None)
            if settings is not None:
                built._wandb_init["settings"] = settings
        loggers.append(built)
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
    e.g. the generator trained after the retriever inside ``evaluate.py``, gets a run of its own. Called from a
    ``finally`` block: the exception that is propagating, if any, gives the run's exit code (:func:`exit_code`)."""
    code = exit_code(sys.exc_info()[1])
    for lg in loggers:
        if isinstance(lg, WandbLogger) and getattr(lg, "_experiment", None) is not None:
            run = lg.experiment
            run.finish(exit_code=code)
            _announce(run)


# -- evaluation and studies -------------------------------------------------------------------------------------
class Tracker:
    """Metrics, tables and images of a non-Lightning job (evaluation, sweeps); a no-op when tracking is off.

    Everything logged is also kept in :attr:`history` so callers and tests can see it without W&B. Used as a
    context manager, an exception leaving the block finishes the run with a non-zero exit code."""

    def __init__(self, run: Any | None = None) -> None:
        self._run = run
        self.history: list[dict[str, Any]] = []
        self.exit_code: int | None = None

    @property
    def enabled(self) -> bool:
        return self._run is not None

    def info(self) -> dict[str, Any] | None:
        """The run's id, name, group, job type and folder (what a trial record keeps), or None when off."""
        run = self._run
        if run is None:
            return None
        out = {k: getattr(run, k, None) for k in ("id", "name", "group", "job_type")}
        settings = getattr(run, "settings", None)
        out["dir"] = str(getattr(settings, "sync_dir", "") or "") or None
        return out

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self.history.append({"kind": "metrics", "step": step, "data": dict(metrics)})
        if self._run is not None:
            self._run.log(dict(metrics), step=step)

    def log_summary(self, metrics: Mapping[str, Any]) -> None:
        """Final values (the run's summary in W&B, not a one-point history)."""
        self.history.append({"kind": "summary", "data": dict(metrics)})
        if self._run is not None:
            self._run.summary.update(dict(metrics))

    def log_table(self, name: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        self.history.append(
            {
                "kind": "table",
                "name": name,
                "columns": list(columns),
                "rows": len(rows),
                "data": [list(r) for r in rows],
            }
        )
        if self._run is not None:
            import wandb

            self._run.log({name: wandb.Table(columns=list(columns), data=[list(r) for r in rows])})

    def log_image(self, name: str, path: str | Path) -> None:
        self.history.append({"kind": "image", "name": name, "path": str(path)})
        if self._run is not None:
            import wandb

            self._run.log({name: wandb.Image(str(path))})

    def finish(self, exit_code: int = 0) -> None:
        self.exit_code = exit_code
        if self._run is not None:
            run, self._run = self._run, None
            run.finish(exit_code=exit_code)
            _announce(run)

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        self.finish(exit_code(exc))


def start_run(
    logger: Mapping[str, Any], *, config: Mapping[str, Any], job_type: str, name: str | None = None
) -> Tracker:
    """A W&B run with the ``logger.wandb`` settings and ``config`` attached (job type ``job_type``, the name
    ``name`` or :func:`run_name`), or a no-op tracker."""
    node = wandb_node(logger)
    if node is None:
        return Tracker(None)
    import wandb

    args = init_arguments(node, stage=job_type, name=name)
    save_dir = Path(str(args.get("save_dir") or "outputs/wandb"))
    save_dir.mkdir(parents=True, exist_ok=True)
    run = wandb.init(
        project=args.get("project") or "xqg",
        entity=args.get("entity"),
        dir=str(save_dir),
        name=args["name"],
        group=args["group"],
        job_type=args["job_type"],
        tags=list(args.get("tags") or []),
        mode=node["mode"],
        config=dict(config),
        settings=wandb_settings(node, job_type),
        reinit="finish_previous",
    )
    return Tracker(run)
