"""Sweep trials on the CPU without a matmul: xQG's fusion is linear in the passage vectors, so
``q . ((1 - alpha) p + alpha s) = (1 - alpha) (q . p) + alpha (q . s)``.

A sweep's trials search the same passages with the same queries and change alpha (and n, the languages, the
mode). The first trial for a setting of n and languages computes ``Q @ P.T`` and ``Q @ S.T`` block by block and
keeps both in the process's resident cache (:data:`xqg.retrieval.resident.CACHE`, keyed by the query matrix's
digest and the stores' identities); every later trial combines them and takes the top k. On 2 CPU cores the
exact 2,110 x 100k x 768 product is most of a trial (``benchmarks/results/augment.md``). For mode ``mean``,
``q . (s / c) = (q . s) / c`` per passage.

Used for fp32 search on the CPU when both score matrices fit in half the cache's host budget
(:func:`applies`); on a GPU the fused search is already a fraction of a second and runs in half precision. The
scores equal the fused search's up to float rounding (the same few-ulp differences as faiss against torch), so
runs share the fp32 runs' fingerprint.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

from xqg.retrieval.fusion import FusionTransform
from xqg.retrieval.resident import CACHE, artifact_key, block_bounds, resident_blocks
from xqg.retrieval.torch_search import TopK, inner_products

#: share of the resident cache's host budget the two score matrices of one setting may take
BUDGET_SHARE = 0.5
ROWS = 64  # queries combined and ranked at a time


def applies(queries: np.ndarray, store: Any, transform: Any, device: torch.device) -> bool:
    """Whether a search of ``queries`` over ``store`` with ``transform`` takes this path: xQG fusion with
    alpha > 0 over an embedding store, on the CPU, both score matrices within :data:`BUDGET_SHARE` of the host
    budget."""
    if (
        device.type != "cpu"
        or not isinstance(transform, FusionTransform)
        or float(transform.fusion.alpha) == 0
    ):
        return False
    if not (hasattr(store, "fingerprint") and hasattr(store, "shards")):
        return False
    need = 2 * 4 * int(queries.shape[0]) * len(store)
    return need <= BUDGET_SHARE * CACHE.host_bytes


def digest(queries: np.ndarray) -> str:
    """The query matrix's identity in cache keys (its float32 bytes and shape)."""
    q = np.ascontiguousarray(queries, dtype=np.float32)
    return hashlib.blake2b(q.tobytes() + repr(q.shape).encode(), digest_size=16).hexdigest()


def search(
    queries: np.ndarray,
    store: Any,
    k: int,
    transform: FusionTransform,
    rows: int,
    on_block: Callable[[int, Sequence[str], TopK], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` rows of ``store``'s passages fused by ``transform``, as
    :func:`xqg.retrieval.torch_search.search_blocks` returns them (``(scores, rows)``, score descending then row
    ascending); ``on_block(offset, ids, top)`` after each block, as there."""
    dev = torch.device("cpu")
    q = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32))
    f, sums = transform.fusion, transform.sums
    a, b1 = np.float32(f.alpha), np.float32(1.0 - float(f.alpha))
    qd = digest(queries)
    groups, n = tuple(sums.groups_for(f.languages)), sums.check_n(f.n)
    blocks = _Lazy(resident_blocks(store, rows, dev))
    top = TopK(q, k)
    with torch.inference_mode():
        for offset, stop in block_bounds(store, rows):
            base_key = ("scores", qd, *artifact_key(store), int(rows), offset, stop)
            base, ids = CACHE.get(base_key, lambda o=offset: _passage_scores(q, blocks.at(o)), dev)
            sums_key = ("sums", *artifact_key(sums), offset, stop, groups, n)  # as the fused search's cache
            qs, _ = CACHE.get(
                ("sum-scores", qd, *sums_key),
                lambda o=offset, e=stop, i=ids: _sum_scores(q, transform, o, e, i),
                dev,
            )
            counts = None
            if f.mode == "mean":
                counts, _ = CACHE.get(
                    (*sums_key, "count"),
                    lambda o=offset, e=stop: (
                        torch.from_numpy(sums.count_rows(o, e, f.languages, f.n)),
                        None,
                    ),
                    dev,
                )
                counts = counts.clamp(min=1).to(torch.float32)[None, :]
            top.add_chunks(offset, _combined(base, qs, a, b1, counts))
            if on_block is not None:
                on_block(offset, ids, top)
    return top.result()


def _combined(
    base: torch.Tensor, qs: torch.Tensor, a: np.float32, b1: np.float32, counts: torch.Tensor | None
) -> Iterator[torch.Tensor]:
    """``(1 - alpha) * base + alpha * qs`` (``qs / counts`` first for mean fusion), :data:`ROWS` queries at a
    time: one pass without whole-matrix temporaries (on 2 CPU cores, 2,110 x 100k: 0.66 s with the top-k,
    against 1.18 s for the two products and their sum alone)."""
    for r in range(0, base.shape[0], ROWS):
        q = qs[r : r + ROWS]
        fused = torch.div(q, counts) if counts is not None else q.clone()
        fused.mul_(float(a)).add_(base[r : r + ROWS], alpha=float(b1))
        yield fused


def _passage_scores(q: torch.Tensor, block: tuple[Sequence[str], torch.Tensor]) -> tuple[torch.Tensor, Any]:
    ids, matrix = block
    return inner_products(q, matrix.to(torch.float32)), list(ids)


def _sum_scores(
    q: torch.Tensor, transform: FusionTransform, offset: int, stop: int, ids: Sequence[str]
) -> tuple[torch.Tensor, None]:
    transform.check_rows(offset, ids, stop - offset)
    f = transform.fusion
    qsum = torch.from_numpy(np.ascontiguousarray(transform.sums.sum_rows(offset, stop, f.languages, f.n)))
    return inner_products(q, qsum.to(torch.float32)), None


class _Lazy:
    """The passage blocks of :func:`resident_blocks`, read forward only as far as a missing score block needs
    (a trial whose scores are all cached reads no passages)."""

    def __init__(self, blocks: Iterator[tuple[int, Sequence[str], torch.Tensor]]) -> None:
        self.blocks = blocks

    def at(self, offset: int) -> tuple[Sequence[str], torch.Tensor]:
        for o, ids, block in self.blocks:
            if o == offset:
                return ids, block
        raise RuntimeError(f"no passage block at row {offset}")
