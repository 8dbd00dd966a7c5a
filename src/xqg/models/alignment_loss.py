"""Cross-lingual alignment objectives added to the retrieval loss (``train.alignment.kind``).

- ``contrastive`` (the DR.DECR family): a query and its English translation, both embedded by the query encoder,
  are pulled together with an InfoNCE loss whose negatives are the other translations of the batch, in both
  directions (query -> translations and translation -> queries, averaged). Under DDP the queries and
  translations of every rank are gathered, as the retrieval loss gathers its negatives, so the loss is the one
  of the global batch.
- ``distill`` (Reimers & Gurevych 2020's multilingual distillation): the query's embedding is regressed onto a
  frozen teacher's embedding of the English translation (mean squared error over the embedding dimensions,
  averaged over queries). Gathered too, so the global-batch value is the same on every rank.

Both are scaled by the world size when gathered, because DDP averages gradients over ranks (as
:func:`xqg.models.retriever_module.contrastive_loss` does).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from xqg.core.errors import XqgInputError

GatherFn = Callable[[torch.Tensor], torch.Tensor]
#: ``none`` is plain xDR training; the others add ``weight *`` their loss.
ALIGNMENT_KINDS = ("none", "contrastive", "distill")


@dataclass(frozen=True)
class AlignmentConfig:
    """Which alignment objective, its weight in the total loss and (contrastive) its softmax temperature."""

    kind: str = "none"
    weight: float = 1.0
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in ALIGNMENT_KINDS:
            raise XqgInputError(f"must be one of {ALIGNMENT_KINDS}, got {self.kind!r}", field="kind")
        if not self.weight >= 0:
            raise XqgInputError(f"must be >= 0, got {self.weight}", field="weight")
        if not self.temperature > 0:
            raise XqgInputError(f"must be > 0, got {self.temperature}", field="temperature")

    @property
    def enabled(self) -> bool:
        return self.kind != "none"


@dataclass
class AlignmentOutput:
    loss: torch.Tensor  # what to back-propagate, before the weight (scaled by the world size when gathered)
    value: torch.Tensor  # the plain global-batch loss, for logging
    accuracy: torch.Tensor | None  # contrastive: share of queries whose own translation scores highest


def translation_contrastive_loss(
    q: torch.Tensor,
    t: torch.Tensor,
    *,
    temperature: float = 1.0,
    gather: GatherFn | None = None,
    world_size: int = 1,
) -> AlignmentOutput:
    """Symmetric InfoNCE between queries ``q`` and their translations ``t`` (row i of each is one pair)."""
    if q.shape != t.shape or q.size(0) == 0:
        raise ValueError(f"queries {tuple(q.shape)} and translations {tuple(t.shape)} must pair row by row")
    if gather is not None:
        q, t = gather(q), gather(t)
    scores = (q.float() @ t.float().T) / temperature
    target = torch.arange(q.size(0), device=scores.device)
    value = 0.5 * (F.cross_entropy(scores, target) + F.cross_entropy(scores.T, target))
    acc = (scores.argmax(dim=1) == target).float().mean()
    loss = value * world_size if gather is not None else value
    return AlignmentOutput(loss=loss, value=value.detach(), accuracy=acc.detach())


def distillation_loss(
    q: torch.Tensor,
    teacher: torch.Tensor,
    *,
    gather: GatherFn | None = None,
    world_size: int = 1,
) -> AlignmentOutput:
    """Mean squared error between the student's query embeddings and the (detached) teacher targets."""
    if q.shape != teacher.shape or q.size(0) == 0:
        raise ValueError(f"queries {tuple(q.shape)} and teacher targets {tuple(teacher.shape)} must match")
    teacher = teacher.detach()
    if gather is not None:
        q, teacher = gather(q), gather(teacher)
    value = F.mse_loss(q.float(), teacher.float())
    loss = value * world_size if gather is not None else value
    return AlignmentOutput(loss=loss, value=value.detach(), accuracy=None)
