"""Lightning training of the bi-encoder with Tevatron's contrastive loss.

Loss (as Tevatron's ``DenseModel``): scores = q @ P^T / temperature over *all* passages of the batch (each
query's positive, its hard negatives, and every other query's passages as in-batch negatives), target of query
i = i * n_passages, cross-entropy. Under DDP both queries and passages are gathered from every device (the local
slice keeps its gradient) so each device sees the global batch's negatives; the loss is multiplied by the world
size because DDP averages gradients over devices, exactly as the reference does.

With a cross-lingual alignment objective (``alignment_kind``: contrastive or distill, see
:mod:`xqg.models.alignment_loss`) the batch also holds each query's English translation and the loss is
``retrieval + alignment_weight * alignment``; distillation's targets come from a frozen ``teacher``.

The dev retrieval check (Recall@k and MRR on a :class:`xqg.data.dev_set.DevSet`, at the start and every few
epochs) is a callback beside it, :class:`xqg.retrieval.dev_check.DevRetrievalCheck`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytorch_lightning as pl
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from transformers import get_linear_schedule_with_warmup

from xqg.models.alignment_loss import (
    AlignmentConfig,
    AlignmentOutput,
    distillation_loss,
    translation_contrastive_loss,
)
from xqg.models.biencoder import BiEncoder

GatherFn = Callable[[torch.Tensor], torch.Tensor]


# -- loss ----------------------------------------------------------------------------------------------------
def gather_with_grad(t: torch.Tensor) -> torch.Tensor:
    """Concatenate ``t`` from every rank (rank order); only this rank's slice carries a gradient.

    Ranks may hold different numbers of rows (a short last batch): rows are padded to the largest count for
    ``all_gather`` and the padding is dropped again.
    """
    world, rank = dist.get_world_size(), dist.get_rank()
    n = torch.tensor([t.size(0)], device=t.device, dtype=torch.long)
    sizes = [torch.zeros_like(n) for _ in range(world)]
    dist.all_gather(sizes, n)
    counts = [int(s.item()) for s in sizes]
    width = max(counts)
    padded = t.detach()
    if t.size(0) < width:
        padded = torch.cat([padded, padded.new_zeros((width - t.size(0), *t.shape[1:]))])
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded.contiguous())
    pieces = [p[:c] for p, c in zip(parts, counts, strict=True)]
    pieces[rank] = t
    return torch.cat(pieces)


@dataclass
class ContrastiveOutput:
    loss: torch.Tensor  # what to back-propagate (scaled by the world size when gathered)
    ce: torch.Tensor  # the plain cross-entropy, for logging
    accuracy: torch.Tensor  # share of queries whose positive scores highest
    n_passages: int


def contrastive_loss(
    q: torch.Tensor,
    p: torch.Tensor,
    *,
    temperature: float = 1.0,
    gather: GatherFn | None = None,
    world_size: int = 1,
) -> ContrastiveOutput:
    """Tevatron's loss. ``p`` holds, for each query in order, its positive then its hard negatives
    (``n_passages`` rows per query). With ``gather`` (DDP), queries and passages of all ranks are used and the
    loss is scaled by ``world_size``."""
    if q.size(0) == 0 or p.size(0) % q.size(0) != 0:
        raise ValueError(
            f"passages ({p.size(0)}) must be a multiple of queries ({q.size(0)}), positive first"
        )
    n = p.size(0) // q.size(0)
    if gather is not None:
        q, p = gather(q), gather(p)
    scores = (q.float() @ p.float().T) / temperature
    target = torch.arange(q.size(0), device=scores.device) * n
    ce = F.cross_entropy(scores, target)
    acc = (scores.argmax(dim=1) == target).float().mean()
    loss = ce * world_size if gather is not None else ce
    return ContrastiveOutput(loss=loss, ce=ce.detach(), accuracy=acc.detach(), n_passages=n)


# -- the Lightning module --------------------------------------------------------------------------------------
def _decay_groups(module: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on biases and LayerNorm weights (as the HF Trainer the reference runs on)."""
    decay, no_decay = [], []
    for name, param in module.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim < 2 or "LayerNorm" in name or "layer_norm" in name else decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


class RetrieverModule(pl.LightningModule):
    """Trains a :class:`BiEncoder` on batches of ``ContrastiveDataModule`` (queries; passages query-major,
    positive of query i at row ``i * n_passages``)."""

    def __init__(
        self,
        model: BiEncoder,
        *,
        lr: float = 1e-5,
        weight_decay: float = 0.0,
        warmup_ratio: float = 0.1,
        warmup_steps: int | None = None,
        adam_eps: float = 1e-8,
        gather_across_devices: bool = True,
        alignment_kind: str = "none",
        alignment_weight: float = 1.0,
        alignment_temperature: float = 1.0,
        teacher: BiEncoder | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.alignment = AlignmentConfig(alignment_kind, alignment_weight, alignment_temperature)
        if self.alignment.kind == "distill" and teacher is None:
            raise ValueError("alignment_kind='distill' needs a frozen teacher model")
        self.teacher = teacher if self.alignment.kind == "distill" else None
        if self.teacher is not None:
            self.teacher.requires_grad_(False)
        self.save_hyperparameters(ignore=["model", "teacher"])

    # -- training -----------------------------------------------------------------------------------------
    def _gather(self) -> tuple[GatherFn | None, int]:
        world = self.trainer.world_size if self._trainer is not None else 1
        if world > 1 and self.hparams.gather_across_devices:
            return gather_with_grad, world
        return None, 1

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        q = self.model.encode_query(batch["query_input_ids"], batch["query_attention_mask"])
        p = self.model.encode_passage(batch["passage_input_ids"], batch["passage_attention_mask"])
        gather, world = self._gather()
        out = contrastive_loss(q, p, temperature=self.model.spec.temperature, gather=gather, world_size=world)
        bs = q.size(0)
        # gathered, every rank computes the same global loss; otherwise average the ranks' losses
        sync = gather is None and self._trainer is not None and self.trainer.world_size > 1
        self.log(
            "train/loss", out.ce, on_step=True, on_epoch=True, prog_bar=True, batch_size=bs, sync_dist=sync
        )
        self.log("train/acc", out.accuracy, on_step=True, on_epoch=True, batch_size=bs, sync_dist=sync)
        loss = out.loss
        if self.alignment.enabled:
            align = self.alignment_loss(q, batch, gather, world)
            loss = loss + self.alignment.weight * align.loss
            self.log("train/align", align.value, on_step=True, on_epoch=True, batch_size=bs, sync_dist=sync)
            if align.accuracy is not None:
                self.log("train/align_acc", align.accuracy, on_epoch=True, batch_size=bs, sync_dist=sync)
        sched = self.lr_schedulers()
        if sched is not None:
            self.log("train/lr", float(sched.get_last_lr()[0]), on_step=True, on_epoch=False, batch_size=bs)
        return loss

    def alignment_loss(
        self, q: torch.Tensor, batch: dict[str, torch.Tensor], gather: GatherFn | None, world: int
    ) -> AlignmentOutput:
        """The alignment objective of the batch's queries ``q`` (already embedded) and their translations."""
        if "translation_input_ids" not in batch:
            raise ValueError(f"alignment {self.alignment.kind!r} needs translations in the batch")
        ids, mask = batch["translation_input_ids"], batch["translation_attention_mask"]
        if self.alignment.kind == "contrastive":
            t = self.model.encode_query(ids, mask)
            return translation_contrastive_loss(
                q, t, temperature=self.alignment.temperature, gather=gather, world_size=world
            )
        assert self.teacher is not None
        self.teacher.eval()  # Lightning puts every submodule in train mode; the teacher stays deterministic
        with torch.no_grad():
            target = self.teacher.encode_query(ids, mask)
        return distillation_loss(q, target, gather=gather, world_size=world)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        """Contrastive loss and in-batch accuracy on held-out examples (when the DataModule has a val split):
        an over-fitting signal next to the retrieval check (:class:`xqg.retrieval.dev_check.DevRetrievalCheck`)."""
        q = self.model.encode_query(batch["query_input_ids"], batch["query_attention_mask"])
        p = self.model.encode_passage(batch["passage_input_ids"], batch["passage_attention_mask"])
        out = contrastive_loss(q, p, temperature=self.model.spec.temperature, gather=None, world_size=1)
        bs = q.size(0)
        sync = self._trainer is not None and self.trainer.world_size > 1
        self.log("val/loss", out.ce, on_epoch=True, batch_size=bs, sync_dist=sync)
        self.log("val/acc", out.accuracy, on_epoch=True, batch_size=bs, sync_dist=sync)

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        opt = torch.optim.AdamW(_decay_groups(self.model, hp.weight_decay), lr=hp.lr, eps=hp.adam_eps)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = hp.warmup_steps if hp.warmup_steps is not None else math.ceil(hp.warmup_ratio * total)
        sched = get_linear_schedule_with_warmup(opt, int(warmup), total)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step", "frequency": 1}}
