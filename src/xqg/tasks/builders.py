"""Lightning objects from ``_target_`` config nodes (``trainer``, ``callbacks``), with narrow execution whitelists.

Hydra's ``instantiate`` builds them, so any ``pytorch_lightning.Trainer`` argument or callback works from the
command line with no list of accepted keys kept here; the whitelists (named classes, :mod:`xqg.tasks.targets`,
replacing the entry point's list rather than adding to it) refuse every other target, nested ones included, so a
config can never name arbitrary code. The task passes what it owns (epochs, loggers, its callbacks, the run
folder).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.errors import InstantiationException
from hydra.utils import execution_whitelist, instantiate
from pytorch_lightning.callbacks import Callback, ModelCheckpoint

from xqg.core.errors import XqgInputError
from xqg.core.progress import bars_enabled
from xqg.tasks.targets import CALLBACK_TARGETS, TRAINER_TARGETS, refusal_line

TARGET = "_target_"


def trainer_arguments(trainer: Mapping[str, Any]) -> dict[str, Any]:
    """The ``trainer`` node's arguments (no ``_target_``); unset values are left to Lightning's defaults."""
    return {k: v for k, v in trainer.items() if k != TARGET and (v is not None or k == "gradient_clip_val")}


def world_size(trainer: Mapping[str, Any]) -> int:
    """Processes the Trainer will run (devices x nodes), resolved without building it."""
    nodes = int(trainer.get("num_nodes") or 1)
    devices = trainer.get("devices", 1)
    if isinstance(devices, list | tuple):
        return max(1, len(devices)) * nodes
    if isinstance(devices, str) and devices.strip().lstrip("-").isdigit():
        devices = int(devices)
    if isinstance(devices, int) and devices > 0:
        return devices * nodes
    if str(trainer.get("accelerator", "auto")) in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        return max(1, torch.cuda.device_count()) * nodes
    return nodes


def build_trainer(trainer: Mapping[str, Any], **owned: Any) -> pl.Trainer:
    """``pytorch_lightning.Trainer`` from the ``trainer`` node, with the task's own arguments on top."""
    node: dict[str, Any] = {TARGET: trainer.get(TARGET, TRAINER_TARGETS[0]), **trainer_arguments(trainer)}
    if node.get("enable_progress_bar") is None:
        node["enable_progress_bar"] = bars_enabled()
    node.setdefault("num_sanity_val_steps", 0)
    try:
        trainer_obj = instantiate(
            node, _execution_whitelist_=_only(TRAINER_TARGETS), _convert_="all", **owned
        )
    except (InstantiationException, TypeError) as e:  # TypeError: an argument Lightning does not take
        raise XqgInputError(refusal_line(e, TRAINER_TARGETS), field="trainer") from None
    if not isinstance(trainer_obj, pl.Trainer):  # e.g. `_partial_: true`
        raise XqgInputError(
            f"must build a Lightning Trainer, got {type(trainer_obj).__name__}", field="trainer"
        )
    return trainer_obj


def build_callbacks(
    callbacks: Mapping[str, Any], *, checkpoint_dir: str | Path | None = None
) -> list[Callback]:
    """The ``callbacks`` nodes as Lightning callbacks; ``ModelCheckpoint`` writes into ``checkpoint_dir``."""
    out: list[Callback] = []
    for name, node in callbacks.items():
        if not isinstance(node, Mapping) or TARGET not in node:
            continue
        extra = {}
        if checkpoint_dir is not None and str(node[TARGET]).rsplit(".", 1)[-1] == ModelCheckpoint.__name__:
            extra["dirpath"] = str(checkpoint_dir)
        try:
            callback = instantiate(
                node, _execution_whitelist_=_only(CALLBACK_TARGETS), _convert_="all", **extra
            )
        except (InstantiationException, TypeError) as e:
            raise XqgInputError(refusal_line(e, CALLBACK_TARGETS), field=f"callbacks.{name}") from None
        if not isinstance(callback, Callback):  # e.g. `_partial_: true`
            raise XqgInputError(
                f"must build a Lightning callback, got {type(callback).__name__}", field=f"callbacks.{name}"
            )
        out.append(callback)
    return out


def _only(targets: tuple[str, ...]) -> Any:
    """Exactly ``targets``: the entry point's own list (e.g. ``hydra.callbacks``' targets) is not added."""
    return execution_whitelist(list(targets), reset=True)
