"""Exact inner-product search in plain torch: ``Q @ block.T``, ``topk`` and an exact top-k merge, block by block.

The GPU path of :func:`xqg.retrieval.index.search` without faiss-gpu (a 135 MB wheel): passage blocks go to the
device in fp16 (fp32 on the CPU), xQG's fusion runs per block on the device (:func:`fuse_block`, the float32
operations of :func:`xqg.retrieval.fusion.fuse_arrays`), and each block's top-k joins the running top-k with the
faiss path's tie rule: score descending, then corpus row ascending. ``topk`` breaks ties arbitrarily, so a block
whose k-th and (k+1)-th scores are equal takes the lowest tied rows explicitly; candidates are ordered by a row
sort followed by a stable score sort, which is the rule exactly.

Half-precision blocks (the GPU default) round queries and fused passages to fp16 before the product (accumulated
and returned in fp32), so their scores differ from fp32 ones in the third or fourth digit: such runs carry
:attr:`SearchBackend.run_key` in their fingerprint. fp32 (the CPU default) matches faiss up to last-bit rounding,
which block layouts already cause, so it shares the faiss runs' fingerprint.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from xqg.core.device import resolve_device
from xqg.core.errors import XqgInputError
from xqg.retrieval.fusion import FusionTransform
from xqg.retrieval.resident import CACHE, artifact_key

log = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "faiss")
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
#: bytes of one query batch's fp32 score matrix, per device type (queries are split to stay under it)
SCORE_BYTES = {"cuda": 2 << 30, "cpu": 256 << 20}


@dataclass(frozen=True)
class SearchBackend:
    """Which implementation searches: ``name`` (``torch`` | ``faiss``), the ``device`` it runs on (torch's
    spelling for torch; faiss's ``auto | cpu | cuda[:N]`` as given) and torch's compute ``dtype``."""

    name: str
    device: str
    dtype: str = "fp32"

    @property
    def run_key(self) -> dict[str, str] | None:
        """What a run's fingerprint must add for this backend: None when it computes fp32 inner products (faiss,
        torch in fp32: the same ranking up to last-bit ties), else ``{"backend": "torch", "dtype": ...}``."""
        if self.name == "faiss" or self.dtype == "fp32":
            return None
        return {"backend": self.name, "dtype": self.dtype}


def resolve_backend(backend: str = "auto", device: str = "auto", dtype: str | None = None) -> SearchBackend:
    """``auto`` -> torch when ``device`` resolves to a CUDA GPU, else faiss. torch computes in ``dtype``
    (default fp16 on CUDA, fp32 on the CPU)."""
    if backend not in BACKENDS:
        raise XqgInputError(f"must be one of {list(BACKENDS)}, got {backend!r}", field="retrieval.backend")
    if dtype is not None and dtype not in DTYPES:
        raise XqgInputError(f"must be one of {sorted(DTYPES)}, got {dtype!r}", field="search dtype")
    if backend == "faiss":
        return SearchBackend("faiss", str(device))
    try:
        dev = resolve_device("cuda" if str(device) == "gpu" else device)
    except RuntimeError as e:
        raise XqgInputError(str(e), field="retrieval.device") from None
    if backend == "auto" and dev.type != "cuda":
        return SearchBackend("faiss", str(device))
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise XqgInputError("no CUDA GPU here", field="retrieval.device")
    return SearchBackend("torch", str(dev), dtype or ("fp16" if dev.type == "cuda" else "fp32"))


def fuse_block(
    p: torch.Tensor, qsum: torch.Tensor, alpha: float, counts: torch.Tensor | None = None
) -> torch.Tensor:
    """``(1 - alpha) * p + alpha * qsum`` (``qsum / max(counts, 1)`` first for mode ``mean``) in float32 on
    ``p``'s device: the operations of :func:`xqg.retrieval.fusion.fuse_arrays`, hence its bits on the CPU.
    ``alpha == 0`` returns ``p`` itself."""
    if float(alpha) == 0.0:
        return p
    dev = p.device
    a = torch.tensor(np.float32(alpha), device=dev)
    b1 = torch.tensor(np.float32(1.0 - float(alpha)), device=dev)
    q = qsum.to(dev, torch.float32, copy=True)
    if counts is not None:
        q /= counts.to(dev).clamp(min=1).to(torch.float32)[:, None]
    q *= a
    q += p.to(torch.float32) * b1
    return q


def inner_products(q: torch.Tensor, block: torch.Tensor) -> torch.Tensor:
    """``q @ block.T`` as float32; half inputs accumulate and return fp32 where torch has ``out_dtype``."""
    if q.dtype == torch.float32:
        return q @ block.T
    if q.device.type == "cuda":
        try:
            return torch.mm(q, block.T, out_dtype=torch.float32)
        except (RuntimeError, TypeError):  # torch without mm(out_dtype=) for this dtype: half output
            pass
    return (q @ block.T).float()


def _order(scores: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Candidates per query sorted by score descending, then row ascending (a row sort, then a stable sort)."""
    rows, perm = rows.sort(dim=1)
    scores = scores.gather(1, perm)
    scores, perm = scores.sort(dim=1, descending=True, stable=True)
    return scores, rows.gather(1, perm)


def block_topk(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The top ``k`` columns of each row of ``scores`` by (score descending, column ascending), exactly: where
    the k-th and (k+1)-th largest scores are equal, the lowest columns among the tied ones are taken."""
    n = scores.shape[1]
    k = min(k, n)
    vals, idx = scores.topk(min(k + 1, n), dim=1)
    if k < n:
        boundary = (vals[:, k - 1] == vals[:, k]).nonzero().squeeze(1).tolist()
        vals, idx = vals[:, :k].clone(), idx[:, :k].clone()
        for i in boundary:  # rare: exact ties across the cut-off
            t = vals[i, k - 1].clone()  # a copy: the row is written below (CUDA refuses aliased writes)
            above = int((vals[i] > t).sum())
            tied = (scores[i] == t).nonzero().squeeze(1)[: k - above]  # ascending columns
            idx[i, above:] = tied
            vals[i, above:] = t
    return _order(vals, idx)


class TopK:
    """The running exact top-``k`` of ``queries`` over passage blocks added in any order."""

    def __init__(self, queries: torch.Tensor, k: int, *, score_bytes: int | None = None) -> None:
        self.q = queries
        self.k = int(k)
        default = SCORE_BYTES.get(queries.device.type, SCORE_BYTES["cpu"])
        self.score_bytes = int(score_bytes if score_bytes is not None else default)
        nq = queries.shape[0]
        self.scores = torch.empty((nq, 0), dtype=torch.float32, device=queries.device)
        self.rows = torch.empty((nq, 0), dtype=torch.int64, device=queries.device)

    def add(self, offset: int, block: torch.Tensor) -> None:
        """Merge the top-k of ``block`` (corpus rows ``offset..``, already on the device in the queries' dtype)."""
        n = block.shape[0]
        if n == 0:
            return
        step = max(1, self.score_bytes // (4 * n))  # queries whose scores fit ``score_bytes``
        self.add_chunks(
            offset, (inner_products(self.q[a : a + step], block) for a in range(0, self.q.shape[0], step))
        )

    def add_chunks(self, offset: int, chunks: Iterable[torch.Tensor]) -> None:
        """Merge the top-k of a block's float32 scores (corpus rows ``offset..``), given as consecutive row
        chunks ``(q, rows)`` of the ``(Q, rows)`` matrix, in query order."""
        tops = [block_topk(c, self.k) for c in chunks if c.shape[1]]
        if tops:
            self._merge(offset, torch.cat([v for v, _ in tops]), torch.cat([i for _, i in tops]))

    def _merge(self, offset: int, vals: torch.Tensor, rows: torch.Tensor) -> None:
        merged = _order(torch.cat([self.scores, vals], 1), torch.cat([self.rows, rows + int(offset)], 1))
        self.scores, self.rows = merged[0][:, : self.k], merged[1][:, : self.k]

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """``(scores float32, rows int64)``, ``(Q, k)``, best first, on the host."""
        return self.scores.cpu().numpy(), self.rows.cpu().numpy()


def _fused(transform: Any, offset: int, ids: Sequence[str], block: torch.Tensor) -> torch.Tensor:
    """``block`` after the search's transform: xQG fusion on the device, any other transform on the host."""
    if transform is None:
        return block
    if isinstance(transform, FusionTransform):
        transform.check_rows(offset, ids, block.shape[0])
        f, sums = transform.fusion, transform.sums
        if float(f.alpha) == 0.0:
            return block
        stop = offset + block.shape[0]
        # resident across searches (a sweep's trials) under the sums' fingerprint, n and language groups
        key = (
            "sums",
            *artifact_key(sums),
            offset,
            stop,
            tuple(sums.groups_for(f.languages)),
            sums.check_n(f.n),
        )
        dev = block.device
        qsum, _ = CACHE.get(
            (*key, "sum"),
            lambda: (torch.from_numpy(sums.sum_rows(offset, stop, f.languages, f.n)), None),
            dev,
        )
        counts = None
        if f.mode == "mean":
            counts, _ = CACHE.get(
                (*key, "count"),
                lambda: (torch.from_numpy(sums.count_rows(offset, stop, f.languages, f.n)), None),
                dev,
            )
        return fuse_block(block, qsum.to(dev, non_blocking=True), float(f.alpha), counts)
    host = transform(offset, list(ids), block.float().cpu().numpy())
    return torch.from_numpy(np.ascontiguousarray(host, dtype=np.float32)).to(block.device)


def search_blocks(
    queries: np.ndarray | torch.Tensor,
    blocks: Iterable[tuple[int, Sequence[str], np.ndarray | torch.Tensor]],
    k: int,
    backend: SearchBackend,
    *,
    transform: Any = None,
    on_block: Callable[[int, Sequence[str], TopK], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` rows of ``blocks`` (``(row offset, docids, (n, dim) matrix)``, host or device) for
    ``queries``: ``(scores, rows)`` as :class:`TopK.result`. ``transform`` is the search's per-block hook;
    ``on_block(offset, ids, top)`` is called after each block is merged into ``top`` (a :class:`TopK`)."""
    dev = torch.device(backend.device)
    dtype = DTYPES[backend.dtype]
    q = torch.as_tensor(np.asarray(queries, dtype=np.float32) if isinstance(queries, np.ndarray) else queries)
    q = q.to(dev, torch.float32).to(dtype).contiguous()
    top = TopK(q, k)
    with torch.inference_mode():
        for offset, ids, block in blocks:
            # a read-only memory map is copied (torch needs writable arrays)
            if isinstance(block, np.ndarray):
                block = np.array(block, copy=not block.flags.writeable or not block.flags.c_contiguous)
            t = torch.from_numpy(block) if isinstance(block, np.ndarray) else block
            t = _fused(transform, int(offset), ids, t.to(dev, non_blocking=True))
            if t.ndim != 2 or t.shape != (len(ids), q.shape[1]):
                raise ValueError(
                    f"block at row {offset}: shape {tuple(t.shape)}, expected ({len(ids)}, {q.shape[1]})"
                )
            top.add(int(offset), t.to(dtype))
            if on_block is not None:
                on_block(int(offset), ids, top)
    return top.result()
