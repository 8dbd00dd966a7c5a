"""Exact inner-product search: faiss ``IndexFlatIP`` (as the paper) or plain torch (:mod:`.torch_search`).

``backend="auto"`` searches with torch on a CUDA GPU (fp16 blocks on the device, fusion there too) and with faiss
on the CPU; faiss searches on the GPU only with faiss-gpu.

The corpus is searched block by block (an :class:`~xqg.retrieval.embeddings.EmbeddingStore`'s chunks or slices
of an in-memory matrix) and the per-block top-k lists are merged, so memory holds one block, not the corpus. Equal
scores are ranked by corpus row (lower first). The torch backend applies that rule exactly; faiss's heap, when
rows tie exactly at a block's depth cut-off, may keep any of them (seen with integer-valued embeddings; real
embeddings almost never tie exactly). BLAS may also round a dot product differently by a last bit depending on
where a row sits in a block, so rows whose scores agree to ~1e-7 can swap between block layouts or backends.
An optional ``transform(row_offset, docids, block) -> block`` rewrites each block before it is
indexed (xQG fuses passage embeddings with generated-query sums there, :mod:`xqg.retrieval.fusion`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from xqg.core.errors import XqgInputError
from xqg.retrieval import fused_scores
from xqg.retrieval.fusion import FusionTransform
from xqg.retrieval.resident import resident_blocks
from xqg.retrieval.torch_search import SearchBackend, TopK, resolve_backend, search_blocks

log = logging.getLogger(__name__)
# faiss logs, at INFO, every SIMD build it fails to import before the one that loads: noise in every run's log
logging.getLogger("faiss.loader").setLevel(logging.WARNING)

Transform = Callable[[int, list[str], np.ndarray], np.ndarray]
DEFAULT_DEPTH = 100
DEFAULT_CHUNK_ROWS = 262_144


class ChunkSource(Protocol):
    def __len__(self) -> int: ...

    def iter_chunks(self, rows: int = ...) -> Iterator[tuple[int, list[str], np.ndarray]]: ...


@dataclass
class SearchResult:
    """Top-``k`` per query, best first: ``scores`` float32, corpus ``rows`` int64 and ``docids`` (all ``(Q, k)``)."""

    scores: np.ndarray
    rows: np.ndarray
    docids: np.ndarray

    def to_run(self, qids: Sequence[str]) -> dict[str, list[tuple[str, float]]]:
        """The run ``{qid: [(docid, score), ...]}`` in rank order (what ``xqg.data.formats.runs.write_run`` takes)."""
        if len(qids) != self.scores.shape[0]:
            raise ValueError(f"{len(qids)} qids for {self.scores.shape[0]} result rows")
        return {
            str(q): [(str(d), float(s)) for d, s in zip(docs, scores, strict=True)]
            for q, docs, scores in zip(qids, self.docids.tolist(), self.scores.tolist(), strict=True)
        }


def gpu_available() -> bool:
    """faiss built with GPU support and at least one GPU visible."""
    import faiss

    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


class _FlatIP:
    """One reusable ``IndexFlatIP`` (moved to GPU when asked), refilled per block."""

    def __init__(self, dim: int, gpu: int | None) -> None:
        import faiss

        self.index: Any = faiss.IndexFlatIP(dim)
        self.on_gpu = gpu is not None
        if gpu is not None:
            self._res = faiss.StandardGpuResources()
            self.index = faiss.index_cpu_to_gpu(self._res, gpu, self.index)

    def search(self, queries: np.ndarray, block: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        self.index.reset()
        self.index.add(block)
        scores, rows = self.index.search(queries, k)
        self.index.reset()
        return scores, rows.astype(np.int64, copy=False)


def _gpu_for(device: str) -> int | None:
    """The GPU to search on (``cuda:N`` -> N), or None for CPU; ``auto`` takes GPU 0 when faiss can."""
    if device == "cpu":
        return None
    if device == "auto":
        return 0 if gpu_available() else None
    if device in ("cuda", "gpu") or device.startswith("cuda:"):
        if not gpu_available():
            raise XqgInputError("no GPU faiss here (install faiss-gpu on a GPU machine)", field="device")
        return int(device.split(":", 1)[1]) if ":" in device else 0
    raise XqgInputError(f"must be auto, cpu or cuda[:N], got {device!r}", field="device")


def _matrix_chunks(
    matrix: np.ndarray, ids: Sequence[str], rows: int
) -> Iterator[tuple[int, list[str], np.ndarray]]:
    for a in range(0, matrix.shape[0], rows):
        b = min(a + rows, matrix.shape[0])
        yield a, [str(d) for d in ids[a:b]], np.asarray(matrix[a:b], dtype=np.float32)


def _merge(
    best: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
    new: tuple[np.ndarray, np.ndarray, np.ndarray],
    k: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-k of the union of two candidate lists per query, by score descending then row ascending."""
    if best is None:
        scores, rows, docids = new
    else:
        scores, rows, docids = (np.concatenate([b, n], axis=1) for b, n in zip(best, new, strict=True))
    order = np.lexsort((rows, -scores), axis=1)[:, :k]
    return tuple(np.take_along_axis(a, order, axis=1) for a in (scores, rows, docids))  # type: ignore[return-value]


def search(
    queries: np.ndarray,
    source: ChunkSource | np.ndarray,
    depth: int = DEFAULT_DEPTH,
    *,
    ids: Sequence[str] | None = None,
    transform: Transform | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    device: str = "auto",
    backend: str | SearchBackend = "auto",
    reuse_scores: bool = True,
) -> SearchResult:
    """Exact top-``depth`` inner-product search of ``queries`` (``(Q, dim)``) over ``source``.

    ``source`` is an embedding store (anything with ``iter_chunks``) or an in-memory ``(N, dim)`` matrix with its
    docids in ``ids`` (row numbers as strings when omitted). ``depth`` is capped at the corpus size. ``backend``:
    ``auto | torch | faiss`` (:func:`~xqg.retrieval.torch_search.resolve_backend` with ``device``) or a resolved
    :class:`~xqg.retrieval.torch_search.SearchBackend`. ``reuse_scores``: on the CPU, an xQG-fused search over a
    store combines score matrices kept from earlier searches in this process (:mod:`xqg.retrieval.fused_scores`:
    a sweep's later trials do no matmul) when they fit the memory budget.
    """
    if depth <= 0:
        raise XqgInputError(f"must be positive, got {depth}", field="depth")
    q = np.ascontiguousarray(queries, dtype=np.float32)
    if q.ndim != 2 or q.shape[0] == 0:
        raise ValueError(f"queries must be a non-empty (Q, dim) matrix, got shape {q.shape}")
    if isinstance(source, np.ndarray):
        if source.ndim != 2:
            raise ValueError(f"corpus matrix must be 2-D, got shape {source.shape}")
        doc_ids: Sequence[str] = ids if ids is not None else [str(i) for i in range(source.shape[0])]
        if len(doc_ids) != source.shape[0]:
            raise ValueError(f"{len(doc_ids)} ids for {source.shape[0]} corpus rows")
        total = source.shape[0]
        chunks = _matrix_chunks(source, doc_ids, chunk_rows)
    else:
        total = len(source)
    k = min(int(depth), total)
    if k == 0:
        raise XqgInputError("the corpus to search is empty")
    how = backend if isinstance(backend, SearchBackend) else resolve_backend(backend, device)
    if not isinstance(source, np.ndarray):
        if (
            reuse_scores
            and isinstance(transform, FusionTransform)
            and _on_cpu(how, device)
            and fused_scores.applies(q, source, transform, torch.device("cpu"))
        ):
            log.info(
                "exact inner-product search on CPU from kept score matrices (fusion is linear), depth %d", k
            )
            store = source
            return _ranked(
                total, lambda on_block: fused_scores.search(q, store, k, transform, chunk_rows, on_block)
            )
        if how.name == "torch" and hasattr(source, "fingerprint") and hasattr(source, "shards"):
            chunks = resident_blocks(source, chunk_rows, torch.device(how.device))  # kept for the next search
        else:
            chunks = source.iter_chunks(chunk_rows)
    if how.name == "torch":
        log.info("exact inner-product search with torch on %s (%s), depth %d", how.device, how.dtype, k)
        return _ranked(
            total, lambda on_block: search_blocks(q, chunks, k, how, transform=transform, on_block=on_block)
        )
    index: _FlatIP | None = None
    best: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    with tqdm(disable=None, total=total, unit="psg", unit_scale=True, desc="search") as bar:
        for offset, block_ids, block in chunks:
            if transform is not None:
                block = transform(offset, block_ids, block)
            block = np.ascontiguousarray(block, dtype=np.float32)
            if block.shape != (len(block_ids), q.shape[1]):
                raise ValueError(
                    f"block at row {offset}: shape {block.shape}, expected ({len(block_ids)}, {q.shape[1]})"
                )
            if index is None:
                index = _FlatIP(q.shape[1], _gpu_for(device))
                log.info("exact inner-product search on %s, depth %d", "GPU" if index.on_gpu else "CPU", k)
            kb = min(k, block.shape[0])
            scores, local = index.search(q, block, kb)
            docids = np.asarray(block_ids, dtype=object)[local]
            best = _merge(best, (scores, local + offset, docids), k)
            bar.update(block.shape[0])
    assert best is not None
    scores, rows, docids = best
    return SearchResult(scores=scores, rows=rows, docids=docids)


def _on_cpu(how: SearchBackend, device: str) -> bool:
    if how.name == "faiss":
        return _gpu_for(device) is None
    return torch.device(how.device).type == "cpu"


def _ranked(
    total: int,
    run: Callable[[Callable[[int, Sequence[str], TopK], None]], tuple[np.ndarray, np.ndarray]],
) -> SearchResult:
    """A torch search (``run(on_block)`` returning ``(scores, rows)``) with its docids. Docids are kept only for
    rows in the running top-k (after each block), so memory never holds the corpus's docids."""
    names: dict[int, str] = {}

    with tqdm(disable=None, total=total, unit="psg", unit_scale=True, desc="search") as bar:

        def keep_names(offset: int, block_ids: Sequence[str], top: TopK) -> None:
            live = np.unique(top.rows.cpu().numpy())
            here = (live >= offset) & (live < offset + len(block_ids))
            fresh = live[here]
            kept = {int(r): names[int(r)] for r in live[~here]}
            kept.update((int(r), str(block_ids[int(r) - offset])) for r in fresh)
            names.clear()
            names.update(kept)
            bar.update(len(block_ids))

        scores, rows = run(keep_names)
    docids = np.array([names[int(r)] for r in rows.ravel()], dtype=object).reshape(rows.shape)
    return SearchResult(scores=scores, rows=rows, docids=docids)
