"""Lightning training of the bi-encoder with Tevatron's contrastive loss, and a dev retrieval check.

Loss (as Tevatron's ``DenseModel``): scores = q @ P^T / temperature over *all* passages of the batch (each
query's positive, its hard negatives, and every other query's passages as in-batch negatives), target of query
i = i * n_passages, cross-entropy. Under DDP both queries and passages are gathered from every device (the local
slice keeps its gradient) so each device sees the global batch's negatives; the loss is multiplied by the world
size because DDP averages gradients over devices, exactly as the reference does.

The dev check encodes a slice of passages and dev queries with the current weights, searches exactly (dot
product in torch) and reports Recall@k and MRR against the gold positive docids, at the start of training and
after every ``dev_every_n_epochs`` epochs, so the curves say whether retrieval gets better, not only the loss.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from xqg.models.biencoder import BiEncoder

GatherFn = Callable[[torch.Tensor], torch.Tensor]


# -- loss ----------------------------------------------------------------------------------------------------
def gather_with_grad(t: torch.Tensor) -> torch.Tensor:
    """Concatenate ``t`` from every rank (rank order); only this rank's slice carries a gradient.

    Ranks may hold different numbers of rows (a short last batch): rows are padded to the largest count for
    ``all_gather`` and the padding is dropped again.
    """
    import torch.distributed as dist

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


# -- dev retrieval ---------------------------------------------------------------------------------------------
@dataclass
class DevSet:
    """Dev queries with their gold positive docids, and the passages to search (which include the golds)."""

    qids: list[str]
    queries: list[str]
    gold: list[frozenset[str]]
    docids: list[str]
    passages: list[str]
    name: str = "dev"
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not (len(self.qids) == len(self.queries) == len(self.gold)):
            raise ValueError("qids, queries and gold must have the same length")
        if len(self.docids) != len(self.passages):
            raise ValueError("docids and passages must have the same length")


@torch.no_grad()
def embed_texts(
    encode: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    tokenizer: Any,
    texts: Sequence[str],
    max_len: int,
    batch_size: int,
    device: torch.device,
) -> torch.Tensor:
    """fp32 embeddings of ``texts`` in input order; batches are formed by length so padding stays small."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out: torch.Tensor | None = None
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        enc = tokenizer(
            [texts[i] for i in idx], max_length=max_len, truncation=True, padding=True, return_tensors="pt"
        )
        emb = encode(enc["input_ids"].to(device), enc["attention_mask"].to(device)).float()
        if out is None:
            out = torch.empty((len(texts), emb.size(1)), dtype=torch.float32, device=device)
        out[torch.tensor(idx, device=device)] = emb
    if out is None:
        raise ValueError("no texts to embed")
    return out


@torch.no_grad()
def evaluate_retrieval(
    model: BiEncoder,
    tokenizer: Any,
    dev: DevSet,
    *,
    ks: Sequence[int] = (1, 5, 20, 100),
    batch_size: int = 128,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Exact dot-product search of ``dev.queries`` over ``dev.passages``: Recall@k (share of a query's gold
    docids in its top k, averaged) and MRR@max(k) (reciprocal rank of the first gold)."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    try:
        p = embed_texts(
            model.encode_passage, tokenizer, dev.passages, model.spec.p_max_len, batch_size, device
        )
        q = embed_texts(model.encode_query, tokenizer, dev.queries, model.spec.q_max_len, batch_size, device)
    finally:
        model.train(was_training)
    depth = min(max(ks), len(dev.docids))
    doc_index = {d: i for i, d in enumerate(dev.docids)}
    gold_rows = [[doc_index[d] for d in g if d in doc_index] for g in dev.gold]
    recall = {k: 0.0 for k in ks}
    mrr = 0.0
    counted = 0
    for start in range(0, q.size(0), 1024):
        top = (q[start : start + 1024] @ p.T).topk(depth, dim=1).indices.cpu().tolist()
        for j, ranked in enumerate(top):
            gold = set(gold_rows[start + j])
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


def linear_warmup_decay(warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """LR multiplier: 0 -> 1 over ``warmup_steps``, then linearly to 0 at ``total_steps`` (HF's schedule)."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return step / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return factor


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
        tokenizer: Any | None = None,
        dev: DevSet | None = None,
        dev_ks: Sequence[int] = (1, 5, 20, 100),
        dev_batch_size: int = 128,
        dev_every_n_epochs: int = 1,
        dev_at_start: bool = True,
    ) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.dev = dev
        self.save_hyperparameters(ignore=["model", "tokenizer", "dev"])
        self.dev_history: list[dict[str, float]] = []

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
        sched = self.lr_schedulers()
        if sched is not None:
            self.log("train/lr", float(sched.get_last_lr()[0]), on_step=True, on_epoch=False, batch_size=bs)
        return out.loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        """Contrastive loss and in-batch accuracy on held-out examples (when the DataModule has a val split):
        an over-fitting signal next to the retrieval check of :meth:`run_dev`."""
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
        sched = torch.optim.lr_scheduler.LambdaLR(opt, linear_warmup_decay(int(warmup), total))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step", "frequency": 1}}

    # -- dev retrieval ------------------------------------------------------------------------------------
    def run_dev(self) -> dict[str, float] | None:
        """Dev retrieval with the current weights, logged at the current global step (rank 0 only; it uses
        the bare model, outside DDP, so other ranks are never waited on)."""
        if self.dev is None or self.tokenizer is None or self.global_rank != 0:
            return None
        ctx = (
            self.trainer.precision_plugin.forward_context()
            if self._trainer is not None
            else contextlib.nullcontext()
        )
        with ctx:
            metrics = evaluate_retrieval(
                self.model,
                self.tokenizer,
                self.dev,
                ks=self.hparams.dev_ks,
                batch_size=self.hparams.dev_batch_size,
                device=self.device,
            )
        logged = {f"{self.dev.name}/{k}": v for k, v in metrics.items()}
        record = {"step": float(self.global_step), "epoch": float(self.current_epoch), **logged}
        self.dev_history.append(record)
        for lg in self.loggers:
            lg.log_metrics(logged, step=self.global_step)
        return metrics

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["xqg_dev_history"] = list(self.dev_history)  # a resumed run keeps the whole curve

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.dev_history = list(checkpoint.get("xqg_dev_history", []))

    def on_train_start(self) -> None:
        if self.hparams.dev_at_start and self.global_step == 0:
            self.run_dev()

    def on_train_epoch_end(self) -> None:
        every = max(1, int(self.hparams.dev_every_n_epochs))
        t = self.trainer
        last = (t.max_epochs is not None and t.max_epochs > 0 and self.current_epoch + 1 >= t.max_epochs) or (
            t.max_steps is not None and t.max_steps > 0 and self.global_step >= t.max_steps
        )
        if (self.current_epoch + 1) % every == 0 or last:
            self.run_dev()
