"""Resuming a killed training run to the weights an uninterrupted run gets.

Lightning's checkpoint restores the model, optimizer, scheduler, loop counters and (for loaders that implement
``state_dict``, :mod:`xqg.data.resumable`) the place in the epoch, but not the random number generators that
dropout draws from: :class:`ExactResume` adds them. Checkpoints are loaded with ``weights_only=True`` (tensors and
plain containers only; never arbitrary pickled objects), which is why every state here is made of tensors, lists
and numbers.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, ModelCheckpoint

from xqg.data.resumable import ResumableLoader

log = logging.getLogger(__name__)

LAST = "last.ckpt"


def rng_state() -> dict[str, Any]:
    """The global generators' states (python, numpy, torch CPU and CUDA), as tensors and plain lists."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss_next],
        "numpy": [
            str(kind),
            torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            int(pos),
            int(has_gauss),
            float(gauss),
        ],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss_next = state["python"]
    random.setstate((int(version), tuple(int(x) for x in internal), gauss_next))
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(gauss)))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class ExactResume(Callback):
    """What Lightning's own restore leaves out for an exact resume: the global RNG states, and (a workaround) the
    training loader's place in the epoch.

    RNG states are saved with every checkpoint and restored while it is loaded, before training starts: nothing
    between that point and the next training step draws from them except the training loader's new pass, which
    draws exactly when the uninterrupted run's did (:class:`xqg.data.resumable.ResumableLoader`).

    Loader states: Lightning builds the training loader early when ``configure_optimizers`` asks for
    ``trainer.estimated_stepping_batches`` (both modules do, for the warmup schedule), before the checkpoint's loop
    state is restored, and then never loads the loader states it saved. ``on_train_start`` runs after the restore
    and before the first batch is drawn (the resumable loader applies its position lazily), so loading them there
    is in time (a no-op when Lightning already did it); the loaders also learn how many batches the trainer takes
    from a pass (``limit_train_batches``).
    """

    def state_dict(self) -> dict[str, Any]:
        return {"rng": rng_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "rng" in state_dict:
            set_rng_state(state_dict["rng"])

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        batches = trainer.num_training_batches
        for loader in _flat(trainer.train_dataloader):
            if isinstance(loader, ResumableLoader) and math.isfinite(batches):
                loader.batches_per_pass = int(batches)  # limit_train_batches: a pass may end early
        trainer.fit_loop._load_combined_loader_states()


def _flat(loaders: Any) -> list[Any]:
    if isinstance(loaders, Mapping):
        return [x for v in loaders.values() for x in _flat(v)]
    if isinstance(loaders, list | tuple):
        return [x for v in loaders for x in _flat(v)]
    return [loaders]


def checkpoint_callback(folder: Path, every_n_steps: int | None) -> ModelCheckpoint:
    """``<folder>/last.ckpt`` every ``every_n_steps`` optimizer steps (None: at every epoch end)."""
    return ModelCheckpoint(
        dirpath=str(folder),
        save_last=True,
        save_top_k=0,
        every_n_train_steps=every_n_steps,
        save_on_train_epoch_end=every_n_steps is None,
    )


def resume_path(folder: Path, task: str) -> str | None:
    """``<folder>/last.ckpt`` when a killed run left one (logged), else None."""
    last = Path(folder) / LAST
    if not last.exists():
        return None
    log.info("resuming %s training from %s", task, last)
    return str(last)


def fit(trainer: pl.Trainer, module: pl.LightningModule, datamodule: Any, ckpt_path: str | None) -> None:
    """``trainer.fit``, resuming from ``ckpt_path`` with ``weights_only=True``."""
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
