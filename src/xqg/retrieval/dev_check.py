"""Dev retrieval during retriever training, as a Lightning callback: do the curves say retrieval gets better?

:class:`DevRetrievalCheck` encodes the dev passages and queries with the current weights (the project's own
encoder, :func:`xqg.retrieval.encode.encode_texts`), searches them exactly (:func:`xqg.retrieval.index.search`)
and reports Recall@k and MRR against the gold docids, at the start of training and after every
``every_n_epochs`` epochs (and the last). It runs on rank 0 only, on the bare model outside DDP, so other ranks
are never waited on; it uses no random numbers and restores train mode, so the trained weights do not change.

Metrics are named ``<dev.name>/<metric>`` (``dev/recall@20``, ``train_slice/mrr@100``, ...). The epoch checks go
through ``pl_module.log_dict`` (so they reach ``trainer.callback_metrics`` and the loggers, at the epoch's last
step as Lightning logs epoch values). Lightning gives the start-of-training check no ``log`` path to a logger
(values logged in ``on_train_start`` are reset with the epoch's results), so that one point is written to the
loggers at step 0 directly. Every check is also kept in :attr:`DevRetrievalCheck.history` (step, epoch,
metrics), saved in Lightning checkpoints so a resumed run keeps the whole curve.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
import torch

from xqg.data.dev_set import DevSet
from xqg.models.biencoder import BiEncoder
from xqg.retrieval.encode import encode_texts
from xqg.retrieval.index import search

#: Where the history lives in a Lightning checkpoint (the key RetrieverModule used, so older checkpoints resume).
CHECKPOINT_KEY = "xqg_dev_history"


def evaluate_dev(
    model: BiEncoder,
    tokenizer: Any,
    dev: DevSet,
    *,
    ks: Sequence[int] = (1, 5, 20, 100),
    batch_size: int = 128,
) -> dict[str, float]:
    """Exact inner-product search of ``dev.queries`` over ``dev.passages`` on the model's device: Recall@k (share
    of a query's gold docids in its top k, averaged) and MRR@max(k) (reciprocal rank of the first gold), over the
    queries with at least one gold among the passages (their number is ``queries``)."""
    kw: dict[str, Any] = {"batch_size": batch_size, "leave": False}
    p = encode_texts(model, tokenizer, dev.passages, "passage", max_len=model.spec.p_max_len, **kw)
    q = encode_texts(model, tokenizer, dev.queries, "query", max_len=model.spec.q_max_len, **kw)
    depth = min(max(ks), len(dev.docids))
    ranked_rows = search(q, p, depth, device="cpu").rows.tolist()
    doc_index = {d: i for i, d in enumerate(dev.docids)}
    recall = {k: 0.0 for k in ks}
    mrr = 0.0
    counted = 0
    for golds, ranked in zip(dev.gold, ranked_rows, strict=True):
        gold = {doc_index[d] for d in golds if d in doc_index}
        if not gold:
            continue
        counted += 1
        for k in ks:
            recall[k] += len(gold.intersection(ranked[:k])) / len(gold)
        mrr += next((1.0 / (r + 1) for r, i in enumerate(ranked) if i in gold), 0.0)
    denom = max(counted, 1)
    metrics = {f"recall@{k}": recall[k] / denom for k in ks}
    metrics[f"mrr@{depth}"] = mrr / denom
    metrics["queries"] = float(counted)
    return metrics


class DevRetrievalCheck(pl.Callback):
    """Dev retrieval of ``pl_module.model`` (a :class:`BiEncoder`) at the start of training (``at_start``) and
    after every ``every_n_epochs`` epochs and the last one; see the module docstring."""

    def __init__(
        self,
        dev: DevSet,
        tokenizer: Any,
        *,
        ks: Sequence[int] = (1, 5, 20, 100),
        batch_size: int = 128,
        every_n_epochs: int = 1,
        at_start: bool = True,
    ) -> None:
        self.dev = dev
        self.tokenizer = tokenizer
        self.ks = tuple(int(k) for k in ks)
        self.batch_size = int(batch_size)
        self.every_n_epochs = max(1, int(every_n_epochs))
        self.at_start = at_start
        self.history: list[dict[str, float]] = []

    def run(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, float] | None:
        """One check with the current weights, recorded in :attr:`history` under ``<dev.name>/<metric>``
        (rank 0 only; None elsewhere)."""
        if trainer.global_rank != 0:
            return None
        with trainer.precision_plugin.forward_context():
            metrics = evaluate_dev(
                pl_module.model, self.tokenizer, self.dev, ks=self.ks, batch_size=self.batch_size
            )
        named = {f"{self.dev.name}/{k}": v for k, v in metrics.items()}
        self.history.append(
            {"step": float(trainer.global_step), "epoch": float(trainer.current_epoch), **named}
        )
        return named

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.at_start or trainer.global_step != 0:
            return
        named = self.run(trainer, pl_module)
        if named is not None:
            for logger in trainer.loggers:
                logger.log_metrics(named, step=0)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        last = (
            trainer.max_epochs is not None
            and trainer.max_epochs > 0
            and trainer.current_epoch + 1 >= trainer.max_epochs
        ) or (
            trainer.max_steps is not None
            and trainer.max_steps > 0
            and trainer.global_step >= trainer.max_steps
        )
        if (trainer.current_epoch + 1) % self.every_n_epochs != 0 and not last:
            return
        named = self.run(trainer, pl_module)
        if named is not None:
            # float64, or Lightning's float32 result state would round the values the loggers see
            exact = {k: torch.tensor(v, dtype=torch.float64) for k, v in named.items()}
            pl_module.log_dict(exact, on_step=False, on_epoch=True, rank_zero_only=True)

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint[CHECKPOINT_KEY] = list(self.history)

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self.history = list(checkpoint.get(CHECKPOINT_KEY, []))
