"""Ranked runs from cached embeddings: exact search for a set of questions, remembered as a run artifact.

``<cache>/runs/<fp>/run.tsv``, where the fingerprint covers the passage and query embeddings, the questions, the
depth and the fusion setting (plus the query sums it reads), so the xDR baseline is searched once for a whole
sweep and a repeated trial costs nothing. ``transform`` is the search's per-chunk hook
(:class:`xqg.retrieval.fusion.FusionTransform` for xQG).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from xqg.core.artifacts import ArtifactDir, fingerprint
from xqg.core.locking import complete_or_claim
from xqg.data.formats.runs import Run, read_run, write_run
from xqg.retrieval.embeddings import EmbeddingStore
from xqg.retrieval.index import Transform, search
from xqg.retrieval.torch_search import SearchBackend, resolve_backend

log = logging.getLogger(__name__)
KIND = "runs"
CODE_VERSION = "1"


def search_questions(
    queries: EmbeddingStore,
    qids: Sequence[str],
    passages: EmbeddingStore,
    depth: int,
    *,
    transform: Transform | None = None,
    chunk_rows: int = 262_144,
    device: str = "auto",
    backend: str | SearchBackend = "auto",
    reuse_scores: bool = True,
) -> Run:
    """Exact top-``depth`` search for the questions ``qids`` (a subset of the query store, in store order)."""
    all_ids = list(queries.ids)
    wanted = set(qids)
    rows = [i for i, qid in enumerate(all_ids) if qid in wanted]
    matrix = queries.load()
    if len(rows) != len(all_ids):
        matrix = matrix[rows]
    result = search(
        matrix,
        passages,
        int(depth),
        transform=transform,
        chunk_rows=chunk_rows,
        device=device,
        backend=backend,
        reuse_scores=reuse_scores,
    )
    return result.to_run([all_ids[i] for i in rows])


def cached_search(
    queries: EmbeddingStore,
    qids: Sequence[str],
    passages: EmbeddingStore,
    depth: int,
    cache_dir: str | Path,
    *,
    transform: Transform | None = None,
    fusion: Mapping[str, Any] | None = None,
    extra_inputs: Mapping[str, str] | None = None,
    chunk_rows: int = 262_144,
    device: str = "auto",
    backend: str | SearchBackend = "auto",
    reuse_scores: bool = True,
) -> Run:
    """:func:`search_questions`, reused from ``<cache>/runs/<fp>/`` when the same search was run before.
    ``fusion`` (the fusion setting's JSON, None for the baseline) and ``extra_inputs`` (e.g. the query sums'
    fingerprint) must identify what ``transform`` does. A half-precision torch backend adds its
    ``run_key`` to the fingerprint; fp32 backends (faiss, torch on the CPU, kept score matrices with
    ``reuse_scores``) share one run."""
    how = backend if isinstance(backend, SearchBackend) else resolve_backend(backend, device)
    config = {
        "depth": int(depth),
        "fusion": dict(fusion) if fusion is not None else None,
        "questions": fingerprint(sorted(qids)),
    }
    if how.run_key is not None:
        config["search"] = how.run_key
    art = ArtifactDir.for_spec(
        cache_dir,
        KIND,
        config=config,
        inputs={
            "passages": str(passages.fingerprint),
            "queries": str(queries.fingerprint),
            **dict(extra_inputs or {}),
        },
        code_version=CODE_VERSION,
    )
    path = art.path / "run.tsv"
    if complete_or_claim(art):
        log.info("reusing cached run %s", path)
        return read_run(path)
    ranked = search_questions(
        queries,
        qids,
        passages,
        depth,
        transform=transform,
        chunk_rows=chunk_rows,
        device=device,
        backend=how,
        reuse_scores=reuse_scores,
    )
    art.begin()
    write_run(path, ranked, fmt="tevatron")
    art.finalize(counts={"queries": len(ranked), "depth": int(depth)})
    return ranked
