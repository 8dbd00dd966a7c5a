"""The torch search backend: the faiss path's rankings (ties by row, exactly where scores are exact), any block
size, xQG fusion on the device with the host fusion's bits, backend choice, and a run fingerprint that only
half precision changes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers.run_if import RunIf
from helpers.tiny import embedding_store
from xqg.core.artifacts import ArtifactDir
from xqg.core.errors import XqgInputError
from xqg.generation.released import import_released
from xqg.retrieval.embeddings import EmbeddingStore, ShardPlan, build_store, memory_rows
from xqg.retrieval.fusion import Fusion, FusionTransform, fuse_arrays
from xqg.retrieval.index import search
from xqg.retrieval.query_sums import QuerySums, QuerySumsConfig
from xqg.retrieval.query_sums_build import ensure_query_sums
from xqg.retrieval.runs import cached_search
from xqg.retrieval.torch_search import SearchBackend, TopK, block_topk, fuse_block, resolve_backend

LANGS = ("ar", "bn", "fi", "ja", "ko", "ru", "te")
TORCH = SearchBackend("torch", "cpu", "fp32")


def _int_data(n: int = 2000, dim: int = 16, nq: int = 23, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Small-integer embeddings: every dot product is exact in fp32, so scores tie exactly and often, and any
    correct implementation must give the same ranking to the last tie."""
    rng = np.random.default_rng(seed)
    p = rng.integers(-2, 3, size=(n, dim)).astype(np.float32)
    p[n // 2 : n // 2 + 200] = p[:200]
    return rng.integers(-2, 3, size=(nq, dim)).astype(np.float32), p


def _reference(q: np.ndarray, p: np.ndarray, k: int) -> np.ndarray:
    scores = q.astype(np.float64) @ p.astype(np.float64).T
    rows = np.broadcast_to(np.arange(p.shape[0]), scores.shape)
    return np.lexsort((rows, -scores), axis=1)[:, :k]


def test_block_topk_takes_the_lowest_columns_among_ties() -> None:
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 4, size=(50, 300)).astype(np.float32)  # ties everywhere, across every cut-off
    for k in (1, 7, 100, 300, 400):
        vals, cols = block_topk(torch.from_numpy(scores), k)
        want = np.lexsort((np.broadcast_to(np.arange(300), scores.shape), -scores), axis=1)[:, :k]
        np.testing.assert_array_equal(cols.numpy(), want)
        np.testing.assert_array_equal(vals.numpy(), np.take_along_axis(scores, want, axis=1))


def test_query_batches_and_block_order_do_not_change_the_result() -> None:
    q, p = _int_data(n=900)
    want = _reference(q, p, 60)
    for score_bytes in (4 * 300, 4 * 300 * 5, None):  # 1 query, 5 queries, all queries per product
        top = TopK(torch.from_numpy(q), 60, score_bytes=score_bytes)
        for a in (600, 0, 300):  # blocks in any order
            top.add(a, torch.from_numpy(p[a : a + 300]))
        np.testing.assert_array_equal(top.result()[1], want)


def test_block_topk_over_wide_blocks_is_exact() -> None:
    """Blocks as wide as real ones (ties everywhere, or the best columns last): the exact rule."""
    rng = np.random.default_rng(8)
    cases = [
        rng.integers(0, 50, size=(20, 20_000)).astype(np.float32),  # ties within and across groups
        rng.standard_normal((20, 20_011)).astype(np.float32),
    ]
    cases[1][3, -5:] = 100.0  # one row's best columns come last
    for scores in cases:
        for k in (1, 10, 30):
            vals, cols = block_topk(torch.from_numpy(scores), k)
            ref = np.lexsort((np.broadcast_to(np.arange(scores.shape[1]), scores.shape), -scores), axis=1)[
                :, :k
            ]
            np.testing.assert_array_equal(cols.numpy(), ref)
            np.testing.assert_array_equal(vals.numpy(), np.take_along_axis(scores, ref, axis=1))


@pytest.mark.parametrize("chunk_rows", [97, 500, 10**6])
def test_torch_equals_faiss_exactly_on_exact_scores(tmp_path: Path, chunk_rows: int) -> None:
    q, p = _int_data()
    want = _reference(q, p, 150)
    ids = [f"doc{i}" for i in range(p.shape[0])]
    faiss_res = search(q, p, 150, ids=ids, chunk_rows=chunk_rows, backend="faiss")
    torch_res = search(q, p, 150, ids=ids, chunk_rows=chunk_rows, backend="torch", device="cpu")
    np.testing.assert_array_equal(torch_res.rows, want)
    np.testing.assert_array_equal(torch_res.scores, faiss_res.scores)
    # faiss's heap keeps any of the rows tied at the depth cut-off (not always the lowest); every other rank agrees
    inside = faiss_res.scores != faiss_res.scores[:, -1:]
    assert inside.mean() > 0.5
    np.testing.assert_array_equal(torch_res.docids[inside], faiss_res.docids[inside])
    store = embedding_store(tmp_path, p, shard_size=700, chunk_size=300)
    from_store = search(q, store, 150, chunk_rows=chunk_rows, backend=TORCH)
    np.testing.assert_array_equal(from_store.rows, want)
    np.testing.assert_array_equal(from_store.docids, torch_res.docids)


def test_torch_equals_faiss_on_float_data_up_to_rounding_ties() -> None:
    rng = np.random.default_rng(5)
    p = rng.standard_normal((3000, 32)).astype(np.float32)
    q = rng.standard_normal((31, 32)).astype(np.float32)
    ref = search(q, p, 100, backend="faiss")
    for chunk_rows in (128, 1000, 10**6):
        res = search(q, p, 100, chunk_rows=chunk_rows, backend=TORCH)
        np.testing.assert_allclose(res.scores, ref.scores, rtol=1e-5, atol=1e-5)
        gaps = np.abs(np.diff(ref.scores, axis=1)) < 1e-4
        firm = np.ones(ref.rows.shape, dtype=bool)
        firm[:, 1:] &= ~gaps
        firm[:, :-1] &= ~gaps
        assert firm.mean() > 0.9
        np.testing.assert_array_equal(res.rows[firm], ref.rows[firm])


def test_half_precision_blocks_rank_close_to_fp32() -> None:
    rng = np.random.default_rng(6)
    p = rng.standard_normal((1500, 32)).astype(np.float16).astype(np.float32)
    q = rng.standard_normal((9, 32)).astype(np.float32)
    ref = search(q, p, 20, backend=TORCH)
    res = search(q, p, 20, backend=SearchBackend("torch", "cpu", "bf16"))
    assert res.scores.dtype == np.float32
    overlap = np.mean([len(set(a) & set(b)) / 20 for a, b in zip(res.rows, ref.rows, strict=True)])
    assert overlap > 0.8
    np.testing.assert_allclose(res.scores, ref.scores, atol=0.3)


def _sums(tmp: Path, passages: EmbeddingStore, docids: list[str], missing: int = 0) -> QuerySums:
    """Query sums over ``docids`` (the last ``missing`` passages have no generated queries)."""
    released = tmp / "released.jsonl"
    with released.open("w") as f:
        for i, d in enumerate(docids):
            gq = {} if i >= len(docids) - missing else {x: [f"{d} {x} q{k}" for k in range(3)] for x in LANGS}
            f.write(json.dumps({"docid": d, "title": "", "text": "t", "generated_queries": gq}) + "\n")
    gen = import_released(released, tmp / "cache", shard_size=64)

    class Encoder:
        fingerprint = "fake"

        def encode(self, texts: list[str], kind: str, **_: object) -> np.ndarray:
            seeds = [int(hashlib.sha256(t.encode()).hexdigest()[:8], 16) for t in texts]
            return np.stack([np.random.default_rng(s).standard_normal(passages.dim) for s in seeds]).astype(
                np.float32
            )

    cfg = QuerySumsConfig(n_max=3, dtype="fp16", shard_rows=64, per_language=True)
    return ensure_query_sums(gen, Encoder(), passages, tmp / "cache", cfg)


def test_fusion_on_the_device_has_the_host_bits_and_ranking(tmp_path: Path) -> None:
    n = 300
    docids = [f"doc{i}" for i in range(n)]
    rng = np.random.default_rng(2)
    p = rng.standard_normal((n, 16)).astype(np.float32)
    passages = embedding_store(tmp_path, p, shard_size=128, dtype="fp16", chunk_size=300)
    sums = _sums(tmp_path, passages, docids, missing=5)
    q = rng.standard_normal((7, 16)).astype(np.float32)
    for fusion in (Fusion(0.3, 2), Fusion(0.1, 3, "mean", ("ar", "fi")), Fusion(0.0, 1)):
        t = FusionTransform(sums, fusion)
        chunk = passages.load()[100:228]
        host = t(100, docids[100:228], chunk)
        qsum = torch.from_numpy(sums.sum_rows(100, 228, fusion.languages, fusion.n))
        counts = torch.from_numpy(sums.count_rows(100, 228, fusion.languages, fusion.n))
        dev = fuse_block(
            torch.from_numpy(chunk), qsum, fusion.alpha, counts if fusion.mode == "mean" else None
        )
        np.testing.assert_array_equal(dev.numpy(), host)  # the same float32 bits
        if fusion.alpha:
            counts_np = counts.numpy() if fusion.mode == "mean" else None
            want = fuse_arrays(chunk, qsum.numpy(), fusion.alpha, fusion.mode, counts_np)
            np.testing.assert_array_equal(dev.numpy(), want)
        for chunk_rows in (50, 128, 1000):
            ref = search(q, passages, 40, transform=t, chunk_rows=chunk_rows, backend="faiss")
            res = search(q, passages, 40, transform=t, chunk_rows=chunk_rows, backend=TORCH)
            np.testing.assert_allclose(res.scores, ref.scores, rtol=1e-5, atol=1e-5)
            np.testing.assert_array_equal(res.docids, ref.docids)
    wrong = [f"x{i}" for i in range(n)]
    with pytest.raises(
        XqgInputError, match="query sums"
    ):  # misaligned rows are caught on the device path too
        search(
            q, passages.load(), 5, ids=wrong, transform=FusionTransform(sums, Fusion(0.1, 2)), backend=TORCH
        )


def test_a_host_transform_still_applies_with_torch(tmp_path: Path) -> None:
    q, p = _int_data(n=600)
    extra = np.ones_like(p)
    res = search(
        q, p, 30, transform=lambda o, ids, b: b + extra[o : o + len(ids)], backend=TORCH, chunk_rows=100
    )
    np.testing.assert_array_equal(res.rows, _reference(q, p + extra, 30))


def test_backend_choice_and_run_key() -> None:
    assert resolve_backend("auto", "cpu") == SearchBackend("faiss", "cpu")
    assert resolve_backend("torch", "cpu") == SearchBackend("torch", "cpu", "fp32")
    assert resolve_backend("torch", "cpu", "fp16").run_key == {"backend": "torch", "dtype": "fp16"}
    assert resolve_backend("torch", "cpu").run_key is None and resolve_backend("faiss").run_key is None
    if not torch.cuda.is_available():
        assert resolve_backend("auto", "auto").name == "faiss"
        with pytest.raises(XqgInputError, match="GPU"):
            resolve_backend("torch", "cuda")
    else:
        assert resolve_backend("auto", "auto") == SearchBackend("torch", "cuda", "fp16")
    with pytest.raises(XqgInputError, match=r"retrieval\.backend"):
        resolve_backend("annoy")


def test_cached_run_is_shared_by_fp32_backends_only(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    p = rng.standard_normal((200, 8)).astype(np.float32)
    passages = embedding_store(tmp_path / "p", p, shard_size=100, chunk_size=300)
    qids = [f"q{i}" for i in range(5)]
    qm = rng.standard_normal((5, 8)).astype(np.float32)
    art = ArtifactDir.for_spec(tmp_path / "q", "embeddings", config={"q": 1})
    queries = build_store(
        art, memory_rows(qids, qids), ShardPlan.make(5, 5), lambda t: qm[[int(x[1:]) for x in t]]
    )
    assert queries is not None
    cache = tmp_path / "cache"
    first = cached_search(queries, qids, passages, 10, cache, backend="faiss")
    again = cached_search(queries, qids, passages, 10, cache, backend="torch", device="cpu")
    assert again == first and len(list((cache / "runs").iterdir())) == 1
    half = cached_search(queries, qids, passages, 10, cache, backend=SearchBackend("torch", "cpu", "bf16"))
    assert len(list((cache / "runs").iterdir())) == 2 and list(half) == list(first)


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_evaluate_with_the_torch_backend_matches_faiss(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``retrieval.backend=torch`` end to end on the CPU, xQG fusion included: the faiss pipeline's run files."""
    import shutil

    from test_pipeline import _compose
    from xqg.data.corpus import open_corpus
    from xqg.data.formats.runs import read_run
    from xqg.retrieval import index
    from xqg.tasks import evaluate as pipeline

    torch_searches: list[int] = []
    real = index._ranked
    monkeypatch.setattr(index, "_ranked", lambda *a: torch_searches.append(1) or real(*a))

    cache = tmp_path / "cache"
    base = _compose(cache, tmp_path / "base", "retrieval.depth=20", "data.world.n_entities=40")
    corpus = open_corpus(str(base.data.bundle(cache).corpus_path), str(cache))
    released = tmp_path / "generated.jsonl"
    with released.open("w", encoding="utf-8") as f:
        for i in range(len(corpus)):
            d = corpus.row(i)
            gq = {x: [f"{d.title} {x} {k}" for k in range(2)] for x in LANGS}
            f.write(
                json.dumps({"docid": d.docid, "title": d.title, "text": d.text, "generated_queries": gq})
                + "\n"
            )
    runs = {}
    for backend, reuse in (("torch", False), ("faiss", False), ("faiss", True)):
        shutil.rmtree(cache / "runs", ignore_errors=True)  # search again, not from the cached run
        out = tmp_path / f"{backend}-{reuse}"
        cfg = _compose(
            cache,
            out,
            "retrieval.depth=20",
            "data.world.n_entities=40",
            f"retrieval.backend={backend}",
            f"retrieval.reuse_scores={reuse}",
            "augmentation=xqg",
            "augmentation.alpha=0.2",
            f"generator.queries_source={released}",
            "augmentation.sums.n_max=2",
            "augmentation.n=2",
        )
        value = pipeline.run(cfg)
        runs[backend, reuse] = (
            value,
            read_run(out / "run.tsv"),
            json.loads((out / "results.json").read_text()),
        )
        # baseline + fused with torch; faiss adds none; kept score matrices (on either backend) add the fused one
        assert (
            len(torch_searches)
            == {("torch", False): 2, ("faiss", False): 2, ("faiss", True): 3}[backend, reuse]
        )
    for other in (("torch", False), ("faiss", True)):
        _same_runs(runs[other], runs["faiss", False])


def _same_runs(ours: tuple, faiss: tuple) -> None:
    """Scores within rounding, the same docids wherever a score is not within rounding of a neighbour's, and
    the same metrics."""
    (v_t, run_t, res_t), (v_f, run_f, res_f) = ours, faiss
    assert run_t.keys() == run_f.keys() and len(run_t) > 10
    for qid, ranked in run_f.items():
        got = run_t[qid]
        np.testing.assert_allclose([s for _, s in got], [s for _, s in ranked], rtol=1e-5, atol=1e-5)
        scores = np.array([s for _, s in ranked])
        firm = np.ones(len(ranked), dtype=bool)  # ranks whose score is not within rounding of a neighbour's
        close = np.abs(np.diff(scores)) < 1e-4
        firm[1:] &= ~close
        firm[:-1] &= ~close
        firm[-1] = False
        assert [d for (d, _), f in zip(got, firm, strict=True) if f] == [
            d for (d, _), f in zip(ranked, firm, strict=True) if f
        ]
    assert v_t == pytest.approx(v_f) and res_t["metrics"] == res_f["metrics"]


@RunIf(min_gpus=1)
def test_cuda_half_precision_is_exact_on_exact_data() -> None:
    """Small integers are exact in fp16 and their products accumulate exactly in fp32: the GPU's fp16 search must
    give the reference ranking to the last tie."""
    q, p = _int_data()
    res = search(q, p, 150, chunk_rows=700, backend=resolve_backend("torch", "cuda"))
    np.testing.assert_array_equal(res.rows, _reference(q, p, 150))
