"""Which Lightning ``Trainer`` arguments change the trained weights: the trainer's share of a training artifact's
fingerprint (retriever and generator checkpoints).

Every ``Trainer`` argument is in exactly one of two explicit lists. A key in neither (a new Lightning argument, a
plugin's) counts as changing the weights, so leaving it out of a fingerprint is always a conscious decision made
here, never an accident. ``devices`` and ``num_nodes`` enter as the world size they resolve to (the effective
batch and the data each process sees), not as written (``devices: [0]`` and ``devices: 1`` are one setting).
Values equal to Lightning's defaults are dropped, so spelling out a default does not retrain anything.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl

from xqg.tasks.builders import TARGET, trainer_arguments, world_size

#: Arguments that change what is trained on, in which order, for how long, or with which numerics.
AFFECTS_WEIGHTS = frozenset(
    {
        "precision",
        "accumulate_grad_batches",
        "gradient_clip_val",
        "gradient_clip_algorithm",
        "max_epochs",
        "min_epochs",
        "max_steps",
        "min_steps",
        "max_time",
        "limit_train_batches",
        "overfit_batches",
        "fast_dev_run",
        "deterministic",
        "benchmark",
        "use_distributed_sampler",
        "reload_dataloaders_every_n_epochs",
        "sync_batchnorm",
        "plugins",
    }
)
#: Arguments that only change logging, validation, progress display, where files go or which device runs the
#: same computation (device numerics are no part of any xqg fingerprint: embeddings are not keyed on it either).
NO_EFFECT = frozenset(
    {
        TARGET,
        "accelerator",
        "strategy",
        "devices",
        "num_nodes",
        "logger",
        "callbacks",
        "default_root_dir",
        "log_every_n_steps",
        "enable_progress_bar",
        "enable_model_summary",
        "enable_checkpointing",
        "enable_autolog_hparams",
        "num_sanity_val_steps",
        "val_check_interval",
        "check_val_every_n_epoch",
        "limit_val_batches",
        "limit_test_batches",
        "limit_predict_batches",
        "inference_mode",
        "profiler",
        "detect_anomaly",
        "barebones",
        "model_registry",
    }
)


def _lightning_defaults() -> dict[str, Any]:
    params = inspect.signature(pl.Trainer.__init__).parameters
    return {k: p.default for k, p in params.items() if p.default is not inspect.Parameter.empty}


_DEFAULTS = _lightning_defaults()
#: What Lightning does when an argument is left at None, so writing it out is the same setting.
_NONE_MEANS: dict[str, tuple[Any, ...]] = {
    "limit_train_batches": (1.0,),
    "precision": ("32-true", "32", 32),
    "gradient_clip_val": (0, 0.0),
    "accumulate_grad_batches": (1,),
}


def _same(a: Any, b: Any) -> bool:
    """The same configured value, type included: ``limit_train_batches`` 1 is one batch, 1.0 all of them."""
    return type(a) is type(b) and bool(a == b)


def _plain(value: Any) -> Any:
    """JSON-able form of an argument value (objects such as plugins by their class name)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return f"{type(value).__module__}.{type(value).__qualname__}"


def weight_settings(trainer: Mapping[str, Any], owned: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The part of ``trainer`` (the config's node, with the task's ``owned`` arguments on top, as
    :func:`xqg.tasks.builders.build_trainer` merges them) that changes the trained weights: non-default values
    of :data:`AFFECTS_WEIGHTS` and of unknown keys, plus ``world_size``."""
    args = {**trainer_arguments(trainer), **dict(owned or {})}
    out: dict[str, Any] = {"world_size": world_size(trainer)}
    for key in sorted(args):
        if key in NO_EFFECT:
            continue
        value = args[key]
        if key in _DEFAULTS and _same(value, _DEFAULTS[key]):
            continue
        if any(_same(value, v) for v in _NONE_MEANS.get(key, ())):
            continue
        if value is None and key not in _DEFAULTS:
            continue
        out[key] = _plain(value)
    return out
