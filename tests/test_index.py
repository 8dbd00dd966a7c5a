"""Exact search: equals brute force, sharded equals unsharded, ties by row, the transform hook, run files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from helpers.tiny import embedding_store
from xqg.core.errors import XqgInputError
from xqg.data.formats.runs import read_run, write_run
from xqg.retrieval.index import gpu_available, search


def _brute_force(q: np.ndarray, p: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    scores = q.astype(np.float64) @ p.astype(np.float64).T
    rows = np.broadcast_to(np.arange(p.shape[0]), scores.shape)
    order = np.lexsort((rows, -scores), axis=1)[:, :k]
    return order, np.take_along_axis(scores, order, axis=1)


def _data(n: int = 3000, dim: int = 24, nq: int = 37, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = rng.standard_normal((n, dim)).astype(np.float32)
    d = min(300, n // 4)
    p[n // 2 : n // 2 + d] = p[:d]  # exact duplicates: tied scores, broken by row
    return rng.standard_normal((nq, dim)).astype(np.float32), p


def _assert_same_ranking(
    rows: np.ndarray, ref_rows: np.ndarray, ref_scores: np.ndarray, tol: float = 1e-4
) -> None:
    """Same rows at every rank, except that rows whose scores tie within float rounding may swap (``ref_*``
    have one column more than ``rows`` so a tie across the depth cut-off is seen too)."""
    k = rows.shape[1]
    gaps = np.abs(np.diff(ref_scores, axis=1)) < tol
    near_tie = np.zeros(ref_scores.shape, dtype=bool)
    near_tie[:, 1:] |= gaps
    near_tie[:, :-1] |= gaps
    firm = ~near_tie[:, :k]
    assert firm.mean() > 0.3  # the check is not vacuous
    np.testing.assert_array_equal(rows[firm], ref_rows[:, :k][firm])
    for i in range(rows.shape[0]):  # tied positions hold the same set of candidates as the reference's ties
        loose = set(rows[i][~firm[i]].tolist())
        assert loose <= set(ref_rows[i][near_tie[i]].tolist())


def test_search_equals_brute_force_with_ties_by_row() -> None:
    q, p = _data()
    res = search(q, p, 100)
    rows, scores = _brute_force(q, p, 101)
    assert res.rows.shape == (37, 100)
    np.testing.assert_allclose(res.scores, scores[:, :100], rtol=1e-5, atol=1e-5)
    _assert_same_ranking(res.rows, rows, scores)
    # exact duplicates (rows r and r + 1500) tie; the lower row comes first wherever faiss scored them equal
    checked = 0
    for i in range(q.shape[0]):
        pos = {int(r): j for j, r in enumerate(res.rows[i])}
        for r, j in pos.items():
            if 1500 <= r < 1800 and r - 1500 in pos and res.scores[i, j] == res.scores[i, pos[r - 1500]]:
                assert pos[r - 1500] < j
                checked += 1
    assert checked > 0
    assert res.docids[0, 0] == str(res.rows[0, 0])  # default ids are row numbers


def test_sharded_search_equals_one_index(tmp_path: Path) -> None:
    q, p = _data()
    whole = search(q, p, 500, ids=[f"doc{i}" for i in range(p.shape[0])], chunk_rows=10**6)
    store = embedding_store(tmp_path, p, shard_size=700)
    assert len(store.shards) == 5
    ref_rows, ref_scores = _brute_force(q, p, 501)
    _assert_same_ranking(whole.rows, ref_rows, ref_scores)
    for chunk_rows in (128, 333, 10**6):
        res = search(q, store, 500, chunk_rows=chunk_rows)
        # the same faiss scores whatever the blocking, so the same ranking, ties included
        np.testing.assert_allclose(res.scores, whole.scores, rtol=1e-6, atol=1e-6)
        _assert_same_ranking(res.rows, ref_rows, ref_scores)
        np.testing.assert_array_equal(res.docids, np.vectorize(lambda r: f"doc{r}")(res.rows))
    run = res.to_run([f"q{i}" for i in range(q.shape[0])])
    assert run["q3"][0] == (whole.docids[3, 0], float(whole.scores[3, 0])) and len(run["q3"]) == 500


def test_depth_is_capped_at_the_corpus_size_and_validated() -> None:
    q, p = _data(n=40, nq=3)
    res = search(q, p, 100)
    assert res.rows.shape == (3, 40) and sorted(res.rows[0].tolist()) == list(range(40))
    with pytest.raises(XqgInputError, match="depth"):
        search(q, p, 0)
    if not gpu_available():
        with pytest.raises(XqgInputError, match="GPU"):
            search(q, p, 5, device="cuda")


def test_transform_hook_sees_each_block_once_in_row_order(tmp_path: Path) -> None:
    q, p = _data(n=1000)
    store = embedding_store(tmp_path, p, shard_size=300)
    rng = np.random.default_rng(1)
    extra = rng.standard_normal(p.shape).astype(np.float32)
    seen: list[tuple[int, str, int]] = []

    def fuse(offset: int, ids: list[str], block: np.ndarray) -> np.ndarray:
        seen.append((offset, ids[0], block.shape[0]))
        return 0.9 * block + 0.1 * extra[offset : offset + block.shape[0]]

    res = search(q, store, 50, transform=fuse, chunk_rows=128)
    assert [s[0] for s in seen] == sorted(s[0] for s in seen) and sum(s[2] for s in seen) == 1000
    assert all(ids0 == f"doc{off}" for off, ids0, _ in seen)
    ref = search(q, 0.9 * p + 0.1 * extra, 50)
    np.testing.assert_array_equal(res.rows, ref.rows)
    np.testing.assert_allclose(res.scores, ref.scores, rtol=1e-6)
    plain = search(q, store, 50)
    assert not np.array_equal(plain.rows, res.rows)


def test_fp16_store_searches_what_it_stores(tmp_path: Path) -> None:
    q, p = _data(n=500)
    store = embedding_store(tmp_path, p, shard_size=200, dtype="fp16")
    res = search(q, store, 20)
    ref_rows, ref_scores = _brute_force(q, p.astype(np.float16).astype(np.float32), 21)
    _assert_same_ranking(res.rows, ref_rows, ref_scores)
    np.testing.assert_allclose(res.scores, ref_scores[:, :20], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("fmt", ["tevatron", "trec"])
def test_run_files_round_trip(tmp_path: Path, fmt: str) -> None:
    q, p = _data(n=200, nq=4)
    run = search(q, p, 10, ids=[f"d{i}" for i in range(200)]).to_run(["a", "b", "c", "d"])
    path = tmp_path / f"run.{fmt}"
    write_run(path, run, fmt=fmt)
    back = read_run(path)
    assert list(back) == list(run)
    for qid in run:
        assert [d for d, _ in back[qid]] == [d for d, _ in run[qid]]
        np.testing.assert_allclose([s for _, s in back[qid]], [s for _, s in run[qid]], rtol=1e-7)
