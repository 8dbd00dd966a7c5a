"""Every Python target a config may name with ``_target_``, in one place, and the entry-point guard.

Threat model: a config (the command line, an experiment file, a ``--config-dir``) may come from someone else, so
it must never run code of its choosing. Hydra 1.4's execution whitelist is the boundary: each place that
instantiates gets a list of *named* classes (exact matches, never a package prefix: a prefix admits every
function and re-export under it, e.g. ``pytorch_lightning.callbacks.LambdaCallback`` or ``Callback.__init__``),
and a nested ``_target_`` inside an allowed node's arguments is checked against the same list. Hydra also refuses
``_partial_`` results, logging-config factories (``()``, ``class``) and aliases (``a.os.system``) it cannot
authorize. A refused target ends the run with one line and exit code 2 (:func:`run_entry_point`).
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from hydra._internal.utils import run_and_report
from hydra.errors import InstantiationException
from hydra.utils import execution_whitelist
from omegaconf import OmegaConf

from xqg.core.errors import XqgInputError
from xqg.tasks.config_errors import config_error_line

#: ``train.py``: Hydra itself (``hydra.callbacks``, logging) instantiates nothing; the trainer, callbacks and
#: loggers are built by the tasks under the narrower lists below.
TRAIN_TARGETS: tuple[str, ...] = ()

#: ``evaluate.py``: the study report of ``sweeps/*.yaml`` (``hydra.callbacks.xqg_study_report``). The sampler
#: node (``hydra.sweeper.sampler``) is instantiated by the Optuna sweeper plugin, which adds its own
#: ``optuna.samplers.*`` and ``hydra_plugins.hydra_optuna_sweeper.*`` to this list for that node only (sampler
#: classes and numeric helpers; nothing there reads, writes or runs anything); it cannot be narrowed from here.
EVALUATE_TARGETS: tuple[str, ...] = (
    "xqg.tasks.study_report.StudyReportCallback",
    "xqg.tasks.studies.train_callback.TrainStudyCallback",  # the training-side studies' report (conf/study/train_*.yaml)
)


def _lightning(subpackage: str, names: Iterable[str]) -> tuple[str, ...]:
    """``names`` under both spellings of Lightning (``pytorch_lightning`` and the unified ``lightning``)."""
    return tuple(
        f"{pkg}.{subpackage}{name}" for pkg in ("pytorch_lightning", "lightning.pytorch") for name in names
    )


#: The ``trainer`` node (``conf/trainer/*.yaml``).
TRAINER_TARGETS: tuple[str, ...] = _lightning("", ["Trainer"])

#: The ``callbacks`` nodes: ``ModelCheckpoint`` (``conf/callbacks/default.yaml``) and the standard callbacks a
#: user adds from the command line. Left out on purpose: those that take Python callables or run code
#: (``LambdaCallback``, ``ModelPruning``, ``ThroughputMonitor``, ``BasePredictionWriter``), the abstract bases.
CALLBACK_TARGETS: tuple[str, ...] = _lightning(
    "callbacks.",
    [
        "ModelCheckpoint",
        "EarlyStopping",
        "LearningRateMonitor",
        "ModelSummary",
        "RichModelSummary",
        "TQDMProgressBar",
        "RichProgressBar",
        "Timer",
        "StochasticWeightAveraging",
        "GradientAccumulationScheduler",
        "DeviceStatsMonitor",
        "OnExceptionCheckpoint",
    ],
)

#: The ``logger`` nodes: W&B (``conf/logger/wandb.yaml``) and the file-based loggers Lightning ships.
LOGGER_TARGETS: tuple[str, ...] = _lightning(
    "loggers.", ["WandbLogger", "CSVLogger", "TensorBoardLogger", "MLFlowLogger"]
)


def refusal_line(e: BaseException, allowed: Iterable[str] | None = None) -> str:
    """Hydra's multi-line error (target, advice, ``full_key: ...``) as one sentence that leads with the key; for
    a refused target, what is allowed there."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    key = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("full_key:")), "")
    text = " ".join(ln for ln in lines if not ln.startswith("full_key:")) or type(e).__name__
    text = text.split(". ", 1)[0].rstrip(".") + "."
    if key.startswith("hydra.sweeper.sampler"):  # the Optuna sweeper's own list, not the entry point's
        allowed = ["Optuna's samplers (optuna.samplers.<Name>Sampler)"]
    if allowed is not None and "whitelist" in text:
        text += f" Allowed here: {_names(allowed) or 'nothing'}."
    return f"config key '{key}': {text}" if key else text


def _names(allowed: Iterable[str]) -> str:
    """The allowed names for a message; the ``lightning.pytorch`` spelling of the same classes left out."""
    return ", ".join(t for t in allowed if not t.startswith("lightning.pytorch."))


#: Where the tasks instantiate ``_target_`` nodes, and what each may name (nested nodes included).
NODE_TARGETS: dict[str, tuple[str, ...]] = {
    "trainer": TRAINER_TARGETS,
    "callbacks": CALLBACK_TARGETS,
    "logger": LOGGER_TARGETS,
}


def check_node_targets(cfg: Mapping[str, Any]) -> None:
    """Refuse, before any work, a ``_target_`` under ``trainer``, ``callbacks`` or ``logger`` that its builder
    (:mod:`xqg.tasks.builders`, :mod:`xqg.tasks.tracking`) would refuse once the data and models are ready."""
    for group, allowed in NODE_TARGETS.items():
        node = cfg.get(group)
        if OmegaConf.is_config(
            node
        ):  # unresolved: a target is a literal name (an interpolated one is refused)
            node = OmegaConf.to_container(node, resolve=False)
        for key, target in _targets(node, group):
            if not isinstance(target, str) or target not in allowed:
                raise XqgInputError(
                    f"target {target!r} is not allowed here; allowed: {_names(allowed)}", field=key
                )


def _targets(node: Any, key: str) -> Iterator[tuple[str, Any]]:
    """``(config key, value)`` of every ``_target_`` in ``node``, nested ones included."""
    if isinstance(node, Mapping):
        for k, v in node.items():
            if k == "_target_":
                yield key, v
            else:
                yield from _targets(v, f"{key}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _targets(v, f"{key}[{i}]")


def _refusal(e: BaseException) -> InstantiationException | None:
    """The execution-policy refusal behind ``e``, if any (Hydra wraps logging-config refusals in ValueError)."""
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, InstantiationException):
            return cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return None


def run_entry_point(main: Callable[[], Any], targets: Iterable[str]) -> None:
    """Run a ``@hydra.main`` function under exactly ``targets`` (no inherited whitelist).

    A target Hydra refuses or cannot build outside the task (``hydra.callbacks``, logging, the sweeper and its
    sampler), a refused trainer/callback/logger target and a config that does not compose become one line on
    stderr and exit code 2; any other error gets Hydra's usual report. ``HYDRA_FULL_ERROR=1`` is set only so
    Hydra lets the exception reach this function.
    """
    allowed = tuple(targets)
    user_full_error = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        with execution_whitelist(list(allowed), reset=True):
            main()
    except Exception as e:
        if isinstance(e, XqgInputError):  # from check_node_targets, before the task's own guard
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        refused = _refusal(e)
        if refused is not None:
            print(f"error: {refusal_line(refused, allowed)}", file=sys.stderr)
            sys.exit(2)
        # a wrong type, misspelt key or group option: one line naming the key
        config_line = config_error_line(e)
        if config_line is not None:
            print(f"error: {config_line}", file=sys.stderr)
            sys.exit(2)
        _restore(user_full_error)
        if user_full_error:
            raise
        run_and_report(functools.partial(_reraise, e))  # Hydra's report (job traceback only), exit code 1
    finally:
        _restore(user_full_error)


def _restore(value: str | None) -> None:
    if value is None:
        os.environ.pop("HYDRA_FULL_ERROR", None)
    else:
        os.environ["HYDRA_FULL_ERROR"] = value


def _reraise(e: BaseException) -> None:
    raise e
