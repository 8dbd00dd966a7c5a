"""Search inputs resident across searches in one process (a sweep's trials): a second search reuses the passage
blocks and query sums it loaded, a different artifact (fingerprint) is loaded afresh, results never change, and
the budgets evict least recently used entries."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from helpers.tiny import embedding_store
from test_torch_search import TORCH, _sums
from xqg.core.artifacts import ArtifactDir
from xqg.retrieval import resident
from xqg.retrieval.embeddings import EmbeddingStore, ShardPlan, build_store, memory_rows
from xqg.retrieval.fusion import Fusion, FusionTransform
from xqg.retrieval.index import search
from xqg.retrieval.resident import ResidentCache


@pytest.fixture
def cache(monkeypatch: pytest.MonkeyPatch) -> ResidentCache:
    fresh = ResidentCache(host_bytes=64 << 20)
    monkeypatch.setattr(resident, "CACHE", fresh)
    monkeypatch.setattr("xqg.retrieval.torch_search.CACHE", fresh)
    monkeypatch.setattr("xqg.retrieval.fused_scores.CACHE", fresh)
    return fresh


def _tagged_store(tmp: Path, p: np.ndarray, tag: str) -> EmbeddingStore:
    ids = [f"doc{i}" for i in range(p.shape[0])]
    art = ArtifactDir.for_spec(tmp, "embeddings", config={"tag": tag})
    store = build_store(
        art, memory_rows(ids, ids), ShardPlan.make(len(ids), 50), lambda t: p[[int(x[3:]) for x in t]]
    )
    assert store is not None
    return store


def _counting(monkeypatch: pytest.MonkeyPatch, obj: object, name: str) -> list[int]:
    calls: list[int] = []
    orig = getattr(obj, name)

    def wrapped(*a: object, **k: object) -> object:
        calls.append(1)
        return orig(*a, **k)

    monkeypatch.setattr(obj, name, wrapped)
    return calls


def test_a_second_search_reuses_blocks_and_sums(
    tmp_path: Path, cache: ResidentCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    n, rng = 300, np.random.default_rng(3)
    p = rng.standard_normal((n, 16)).astype(np.float32)
    passages = embedding_store(tmp_path, p, shard_size=128, dtype="fp16", chunk_size=300)
    sums = _sums(tmp_path, passages, [f"doc{i}" for i in range(n)])
    q = rng.standard_normal((5, 16)).astype(np.float32)
    reads = _counting(monkeypatch, passages, "iter_chunks")
    sum_reads = _counting(monkeypatch, sums, "sum_rows")
    t = FusionTransform(sums, Fusion(0.3, 2))
    first = search(q, passages, 20, transform=t, chunk_rows=100, backend=TORCH, reuse_scores=False)
    assert (len(reads), len(sum_reads), cache.misses, cache.hits) == (1, 5, 10, 0)  # 5 blocks
    again = search(
        q,
        passages,
        20,
        transform=FusionTransform(sums, Fusion(0.5, 2)),
        chunk_rows=100,
        backend=TORCH,
        reuse_scores=False,
    )
    assert (len(reads), len(sum_reads), cache.hits) == (1, 5, 10)  # nothing read again
    plain = search(q, passages.load(), 20, ids=[f"doc{i}" for i in range(n)], transform=t, backend=TORCH)
    np.testing.assert_array_equal(first.docids, plain.docids)  # the cache does not change results
    np.testing.assert_array_equal(first.scores, plain.scores)
    assert not np.array_equal(first.scores, again.scores)
    t3 = FusionTransform(sums, Fusion(0.3, 3))
    search(q, passages, 20, transform=t3, chunk_rows=100, backend=TORCH, reuse_scores=False)
    assert (len(reads), len(sum_reads)) == (1, 11)  # +1 for the matrix search's one block; another n: 5


def test_another_artifact_is_never_served_stale(
    tmp_path: Path, cache: ResidentCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(4)
    q = rng.standard_normal((4, 8)).astype(np.float32)
    a = _tagged_store(tmp_path, rng.standard_normal((90, 8)).astype(np.float32), "a")
    b = _tagged_store(tmp_path, rng.standard_normal((90, 8)).astype(np.float32) + 1, "b")
    assert a.fingerprint != b.fingerprint
    reads_b = _counting(monkeypatch, b, "iter_chunks")
    ra = search(q, a, 10, chunk_rows=64, backend=TORCH)
    rb = search(q, b, 10, chunk_rows=64, backend=TORCH)
    assert len(reads_b) == 1 and cache.hits == 0
    np.testing.assert_array_equal(rb.scores, search(q, b.load(), 10, backend=TORCH).scores)
    assert not np.array_equal(ra.scores, rb.scores)
    monkeypatch.setattr(b, "fingerprint", "changed")  # the same files under another fingerprint: loaded again
    search(q, b, 10, chunk_rows=64, backend=TORCH)
    assert len(reads_b) == 2


def test_budget_evicts_least_recently_used_and_skips_oversized() -> None:
    cache = ResidentCache(host_bytes=3 * 400)  # three 10x10 float32 tensors
    cpu = torch.device("cpu")
    loads: list[int] = []

    def loader(i: int, rows: int = 10):
        return lambda: (loads.append(i), (torch.full((rows, 10), float(i)), i))[1]

    for i in range(3):
        cache.get(i, loader(i), cpu)
    cache.get(0, loader(0), cpu)  # 0 is now the most recent
    cache.get(3, loader(3), cpu)  # evicts 1
    assert loads == [0, 1, 2, 3] and len(cache) == 3
    t, extra = cache.get(1, loader(1), cpu)
    assert loads[-1] == 1 and extra == 1 and float(t[0, 0]) == 1.0
    cache.get(9, loader(9, rows=40), cpu)  # larger than the budget: served, not kept
    cache.get(9, loader(9, rows=40), cpu)
    assert loads[-2:] == [9, 9] and cache.used(False) <= 3 * 400
