"""xQG fusion inside the real search over real stores: alpha = 0 reproduces the baseline run exactly, and a
fused search equals a search over the brute-force fused matrix."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from xqg.core.artifacts import ArtifactDir
from xqg.generation.released import import_released
from xqg.generation.store import GeneratedStore
from xqg.retrieval.embeddings import ShardPlan, build_store, memory_rows
from xqg.retrieval.fusion import Fusion, FusionTransform
from xqg.retrieval.index import search
from xqg.retrieval.query_sums import QuerySumsConfig
from xqg.retrieval.query_sums_build import ensure_query_sums

LANGS = ("ar", "bn", "fi", "ja", "ko", "ru", "te")
DIM = 8


class FakeRetriever:
    """A query encoder with a fingerprint; deterministic text -> vector."""

    fingerprint = "fake-retriever"

    def __init__(self) -> None:
        self.calls = 0

    def encode(
        self, texts: list[str], kind: str, *, max_len: int | None = None, batch_size: int = 64
    ) -> np.ndarray:
        assert kind == "query"
        self.calls += len(texts)
        return np.stack(
            [
                np.random.default_rng(int(hashlib.sha256(t.encode()).hexdigest()[:8], 16)).standard_normal(
                    DIM
                )
                for t in texts
            ]
        ).astype(np.float32)


def test_fused_search_over_real_stores(tmp_path: Path) -> None:
    n_docs = 40
    docids = [f"doc{i}" for i in range(n_docs)]
    released = tmp_path / "released.jsonl"
    with released.open("w") as f:
        for d in docids:
            gq = {lang: [f"{d} {lang} q{k}" for k in range(3)] for lang in LANGS}
            f.write(json.dumps({"docid": d, "title": "", "text": "t", "generated_queries": gq}) + "\n")
    gen = import_released(released, tmp_path / "cache", shard_size=16)
    assert isinstance(gen, GeneratedStore)
    rng = np.random.default_rng(1)
    P = rng.standard_normal((n_docs, DIM)).astype(np.float32)
    row_of = {d: i for i, d in enumerate(docids)}
    art = ArtifactDir.for_spec(tmp_path / "cache", "embeddings", config={"test": 1}, inputs={})
    passages = build_store(
        art,
        memory_rows(docids, docids),
        ShardPlan(n_docs, 16),
        lambda t: P[[row_of[x] for x in t]],
        dtype="fp16",
    )
    assert passages is not None
    ret = FakeRetriever()
    sums = ensure_query_sums(
        gen, ret, passages, tmp_path / "cache", QuerySumsConfig(n_max=3, dtype="fp32", shard_rows=16)
    )
    assert ret.calls == n_docs * 7 * 3 and sums.counts["missing_queries"] == 0
    queries = rng.standard_normal((5, DIM)).astype(np.float32)

    base = search(queries, passages, 10, chunk_rows=16)
    zero = search(queries, passages, 10, chunk_rows=16, transform=FusionTransform(sums, Fusion(0.0, 3)))
    assert zero.scores.tobytes() == base.scores.tobytes() and (zero.docids == base.docids).all()

    fused_full = (1 - 0.2) * passages.load() + 0.2 * sums.sum_rows(0, n_docs, None, 2)
    fused = search(queries, passages, 10, chunk_rows=16, transform=FusionTransform(sums, Fusion(0.2, 2)))
    want = search(queries, fused_full.astype(np.float32), 10, ids=docids)
    assert (fused.docids == want.docids).all()
    np.testing.assert_allclose(fused.scores, want.scores, rtol=1e-5, atol=1e-5)
    assert not (fused.docids == base.docids).all()
    # reused on the next call, nothing re-encoded
    ensure_query_sums(
        gen, ret, passages, tmp_path / "cache", QuerySumsConfig(n_max=3, dtype="fp32", shard_rows=16)
    )
    assert ret.calls == n_docs * 7 * 3
