"""Sweep trials from kept score matrices (:mod:`xqg.retrieval.fused_scores`): the fused search's rankings and
scores (up to rounding) for sum and mean fusion, language subsets and several blocks and shards; a later trial
reads no passages, no sums and does no matmul; another query matrix or store is never served stale; and the
path is taken only where it applies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from helpers.tiny import embedding_store
from test_resident import _counting
from test_torch_search import TORCH, _sums
from xqg.retrieval import fused_scores, resident
from xqg.retrieval.fusion import Fusion, FusionTransform
from xqg.retrieval.index import search
from xqg.retrieval.resident import ResidentCache
from xqg.retrieval.torch_search import SearchBackend

N, DIM = 300, 16


@pytest.fixture
def cache(monkeypatch: pytest.MonkeyPatch) -> ResidentCache:
    fresh = ResidentCache(host_bytes=64 << 20)
    for where in ("xqg.retrieval.resident", "xqg.retrieval.torch_search", "xqg.retrieval.fused_scores"):
        monkeypatch.setattr(f"{where}.CACHE", fresh)
    assert resident.CACHE is fresh
    return fresh


@pytest.fixture
def stores(tmp_path: Path) -> tuple:
    rng = np.random.default_rng(7)
    p = rng.standard_normal((N, DIM)).astype(np.float32)
    passages = embedding_store(tmp_path, p, shard_size=128, dtype="fp16", chunk_size=300)
    sums = _sums(tmp_path, passages, [f"doc{i}" for i in range(N)], missing=20)
    return passages, sums, rng.standard_normal((9, DIM)).astype(np.float32)


@pytest.mark.parametrize("backend", [TORCH, "faiss"])
@pytest.mark.parametrize(
    "fusion",
    [Fusion(0.3, 2), Fusion(0.01, 3), Fusion(0.5, 1, "mean"), Fusion(0.2, 3, languages=("ja", "ko"))],
    ids=["sum", "small-alpha", "mean", "languages"],
)
def test_kept_scores_give_the_fused_searchs_ranking(
    stores: tuple, cache: ResidentCache, backend: object, fusion: Fusion, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fused_scores, "ROWS", 4)  # 9 queries: chunks of 4, 4 and 1
    passages, sums, q = stores
    t = FusionTransform(sums, fusion)
    assert fused_scores.applies(q, passages, t, torch.device("cpu"))
    for _ in range(2):  # computed, then combined from the cache
        got = search(q, passages, 25, transform=t, chunk_rows=100, backend=backend)  # type: ignore[arg-type]
        want = search(q, passages, 25, transform=t, chunk_rows=100, backend=TORCH, reuse_scores=False)
        np.testing.assert_array_equal(got.docids, want.docids)
        np.testing.assert_allclose(got.scores, want.scores, rtol=1e-5, atol=1e-5)
        assert not np.array_equal(got.rows, np.sort(got.rows, axis=1))  # ranked by score, not by row


def test_a_later_trial_reads_nothing_and_multiplies_nothing(
    stores: tuple, cache: ResidentCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    passages, sums, q = stores
    reads = _counting(monkeypatch, passages, "iter_chunks")
    sum_reads = _counting(monkeypatch, sums, "sum_rows")
    products = _counting(monkeypatch, fused_scores, "inner_products")
    first = search(q, passages, 20, transform=FusionTransform(sums, Fusion(0.3, 2)), chunk_rows=100)
    assert (len(reads), len(sum_reads), len(products)) == (
        1,
        5,
        10,
    )  # 5 blocks (shards of 128, blocks of 100)
    later = search(q, passages, 20, transform=FusionTransform(sums, Fusion(0.1, 2)), chunk_rows=100)
    assert (len(reads), len(sum_reads), len(products)) == (1, 5, 10)
    assert not np.array_equal(first.scores, later.scores)
    search(q, passages, 20, transform=FusionTransform(sums, Fusion(0.1, 3)), chunk_rows=100)  # another n
    assert (len(reads), len(sum_reads), len(products)) == (1, 10, 15)  # its sums' scores only
    other = search(q + 1, passages, 20, transform=FusionTransform(sums, Fusion(0.1, 2)), chunk_rows=100)
    assert len(products) == 25  # other queries: computed afresh, never served stale
    want = search(q + 1, passages, 20, transform=FusionTransform(sums, Fusion(0.1, 2)), reuse_scores=False)
    np.testing.assert_array_equal(other.docids, want.docids)


def test_applies_only_to_cpu_fusion_over_a_store_within_budget(
    stores: tuple, cache: ResidentCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    passages, sums, q = stores
    cpu = torch.device("cpu")
    t = FusionTransform(sums, Fusion(0.3, 2))
    assert fused_scores.applies(q, passages, t, cpu)
    assert not fused_scores.applies(q, passages, FusionTransform(sums, Fusion(0, 2)), cpu)  # the baseline
    assert not fused_scores.applies(q, passages.load(), t, cpu)  # an in-memory matrix
    assert not fused_scores.applies(q, passages, None, cpu)
    assert not fused_scores.applies(q, passages, t, torch.device("meta"))  # not the CPU
    monkeypatch.setattr(
        cache, "host_bytes", 2 * 4 * q.shape[0] * N * 2 - 1
    )  # both matrices over half the budget
    assert not fused_scores.applies(q, passages, t, cpu)
    products = _counting(monkeypatch, fused_scores, "inner_products")
    got = search(q, passages, 20, transform=t, chunk_rows=100, backend=SearchBackend("torch", "cpu", "fp32"))
    assert products == [] and got.docids.shape == (9, 20)  # the fused search ran instead
