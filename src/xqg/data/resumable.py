"""Training data loaders that resume mid-epoch: a killed run continues with the batch it would have trained on next.

Lightning saves ``state_dict()`` of every training loader that has one into its checkpoint and, on a mid-epoch
resume, calls ``load_state_dict()`` before iterating (``pytorch_lightning.loops.fit_loop``). The state is the
number of batches delivered in the current pass and, for a sampler that shuffles with a ``torch.Generator``
(``RandomSampler``), that generator's state when the pass began and now. On resume an unfinished pass replays
the same order and skips the delivered batches at the index level (their examples are never loaded or
collated); after a finished pass the generator continues from where it was, so the next epoch's order is the
uninterrupted run's.

Lightning re-creates the loader for distributed training (``DistributedSampler``); it rebuilds a custom batch
sampler as ``cls(sampler, batch_size=, drop_last=)``, which :class:`ResumableBatchSampler` accepts.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import BatchSampler, DataLoader, Sampler


def _shuffle_generator(sampler: Any) -> torch.Generator | None:
    """The generator a sampler shuffles with (``RandomSampler``), if it keeps one across passes."""
    gen = getattr(sampler, "generator", None)
    return gen if isinstance(gen, torch.Generator) else None


class ResumableBatchSampler(BatchSampler):
    """A ``BatchSampler`` whose next pass can start part-way: after :meth:`resume`, the pass restores the
    shuffling generator's state of the interrupted pass and skips the batches already trained on."""

    def __init__(self, sampler: Sampler[Any], batch_size: int, drop_last: bool) -> None:
        super().__init__(sampler, batch_size, drop_last)
        self.pass_generator_state: torch.Tensor | None = None
        self._resume: tuple[int, torch.Tensor | None] | None = None

    def resume(self, skip: int, generator_state: torch.Tensor | None) -> None:
        self._resume = (int(skip), generator_state)

    def __iter__(self) -> Iterator[list[Any]]:
        skip, state = self._resume or (0, None)
        self._resume = None
        gen = _shuffle_generator(self.sampler)
        if gen is not None:
            if state is not None:
                gen.set_state(state)
            # taken when the pass starts drawing (after DataLoader's own draw for worker seeds), so replaying it
            # gives the same order with or without persistent workers
            self.pass_generator_state = gen.get_state()
        for i, batch in enumerate(super().__iter__()):
            if i >= skip:
                yield batch


class ResumableLoader(DataLoader):
    """A ``DataLoader`` (built with a :class:`ResumableBatchSampler`) that Lightning checkpoints and restores.

    A loaded position is applied when the next pass starts, unless the interrupted pass had delivered all the
    batches the trainer takes from a pass (``len(self)``, or :attr:`batches_per_pass` under
    ``limit_train_batches``): then the next pass is a new epoch, from its beginning.

    A pass starts (and draws from the RNGs) at its first batch, not when ``iter()`` is called, so the draws
    happen in the same order relative to training steps whether or not a run was resumed.
    """

    #: batches the trainer takes from one pass (``trainer.num_training_batches``); None: all of them
    batches_per_pass: int | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if isinstance(self.batch_sampler, ResumableBatchSampler):
            # ``loader.sampler`` is what Lightning wraps for distributed training and calls ``set_epoch`` on;
            # given a batch sampler, DataLoader would name a SequentialSampler there (it refuses assignment)
            object.__setattr__(self, "sampler", self.batch_sampler.sampler)

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        pending, self._pending = getattr(self, "_pending", None), None
        self._delivered = 0
        mid_pass = False
        if pending is not None and isinstance(self.batch_sampler, ResumableBatchSampler):
            batches, pass_state, state_now = pending
            if 0 < batches < min(len(self), self.batches_per_pass or len(self)):
                self.batch_sampler.resume(batches, pass_state)
                self._delivered, mid_pass = batches, True
            elif (
                state_now is not None and (gen := _shuffle_generator(self.batch_sampler.sampler)) is not None
            ):
                gen.set_state(state_now)  # a finished pass: the next one continues the generator's stream
        if mid_pass:
            # torch's iterator draws its workers' base seed from the global RNG (without a loader generator);
            # the uninterrupted run drew it before the checkpoint, so the resumed pass must not draw it again
            with torch.random.fork_rng(devices=[]):
                batches_iter = super().__iter__()
        else:
            batches_iter = super().__iter__()
        for batch in batches_iter:
            self._delivered += 1
            yield batch

    def state_dict(self) -> dict[str, Any]:
        gen = _shuffle_generator(getattr(self.batch_sampler, "sampler", None))
        return {
            "batches": int(getattr(self, "_delivered", 0)),
            "generator_state": getattr(self.batch_sampler, "pass_generator_state", None),
            "generator_state_now": gen.get_state() if gen is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._pending = (
            int(state.get("batches", 0)),
            state.get("generator_state"),
            state.get("generator_state_now"),
        )


def resumable_loader(
    dataset: Any, sampler: Sampler[Any], *, batch_size: int, drop_last: bool = False, **kwargs: Any
) -> ResumableLoader:
    """``DataLoader(dataset, sampler=sampler, batch_size=..., drop_last=...)`` that resumes mid-epoch."""
    return ResumableLoader(
        dataset, batch_sampler=ResumableBatchSampler(sampler, batch_size, drop_last), **kwargs
    )
