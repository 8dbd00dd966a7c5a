"""Query prefix sums and fusion on synthetic numpy data: brute force is the oracle."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from xqg.core.artifacts import canonical_json
from xqg.core.errors import XqgInputError
from xqg.retrieval.fusion import Fusion, FusionTransform, fuse, fuse_arrays
from xqg.retrieval.query_sums import QuerySumsConfig, query_sums_artifact
from xqg.retrieval.query_sums_build import build_query_sums

LANGS = ("ar", "bn", "fi")
DIM = 6
N_MAX = 3


def _embedder(calls: list[int] | None = None):
    """Deterministic text -> vector (hash-seeded), so brute-force sums can be recomputed independently."""

    def vec(text: str) -> np.ndarray:
        seed = int.from_bytes(text.encode("utf-8")[-8:].rjust(8, b"\0"), "little") ^ len(text)
        return np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)

    def embed(texts: list[str]) -> np.ndarray:
        if calls is not None:
            calls.append(len(texts))
        return np.stack([vec(t) for t in texts])

    return embed, vec


def _records(
    docids: list[str], *, drop: set[tuple[str, str, int]] = frozenset()
) -> list[tuple[str, str, int, str]]:
    return [
        (d, lang, k, f"q {d} {lang} {k}")
        for d in docids
        for lang in LANGS
        for k in range(N_MAX)
        if (d, lang, k) not in drop
    ]


def _brute(records, vec, docids, langs, n) -> tuple[np.ndarray, np.ndarray]:
    row = {d: i for i, d in enumerate(docids)}
    out = np.zeros((len(docids), DIM), dtype=np.float64)
    cnt = np.zeros(len(docids), dtype=np.int64)
    for d, lang, k, text in records:
        if lang in langs and k < n:
            out[row[d]] += vec(text)
            cnt[row[d]] += 1
    return out, cnt


INPUTS = {"retriever": "r1", "generated": "g1"}


@pytest.mark.parametrize(("per_language", "dtype"), [(False, "fp32"), (True, "fp32"), (True, "fp16")])
def test_prefix_sums_equal_brute_force(tmp_path: Path, per_language: bool, dtype: str) -> None:
    docids = [f"d{i}" for i in range(11)]
    drop = {("d3", "bn", 2), ("d3", "ar", 0), ("d7", "fi", 1)} | {
        ("d9", lang, k) for lang in LANGS for k in range(N_MAX)
    }
    recs = _records(docids, drop=drop)
    embed, vec = _embedder()
    cfg = QuerySumsConfig(languages=LANGS, n_max=N_MAX, dtype=dtype, per_language=per_language, shard_rows=4)
    sums = build_query_sums(recs, embed, docids, tmp_path, cfg, inputs=INPUTS, embed_batch=7)
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == "fp32" else {"rtol": 2e-3, "atol": 2e-2}
    assert len(sums) == 11 and sums.dim == DIM and len(sums.shards) == 3
    assert sums.counts["queries"] == len(recs)
    assert sums.counts["missing_queries"] == len(drop)
    assert sums.counts["passages_missing_queries"] == 3 and sums.counts["passages_without_queries"] == 1
    subsets = [c for r in range(1, 4) for c in itertools.combinations(LANGS, r)] if per_language else [LANGS]
    for langs, n in itertools.product(subsets, range(1, N_MAX + 1)):
        want, want_cnt = _brute(recs, vec, docids, langs, n)
        np.testing.assert_allclose(sums.sum_rows(0, 11, langs, n), want, **tol)
        np.testing.assert_array_equal(sums.count_rows(0, 11, langs, n), want_cnt)
        # a range that straddles shard boundaries
        np.testing.assert_allclose(sums.sum_rows(3, 9, langs, n), want[3:9], **tol)
    if not per_language:
        with pytest.raises(XqgInputError, match="per_language"):
            sums.sum_rows(0, 2, ("ar",), 1)


def test_fp16_storage_close_and_small(tmp_path: Path) -> None:
    docids = [f"d{i}" for i in range(5)]
    recs = _records(docids)
    embed, vec = _embedder()
    sums = build_query_sums(
        recs, embed, docids, tmp_path, QuerySumsConfig(languages=LANGS, n_max=N_MAX), inputs=INPUTS
    )
    assert sums.config.dtype == "fp16" and sums._map(0, "all").dtype == np.float16
    assert sums.nbytes == N_MAX * 5 * DIM * 2
    want, _ = _brute(recs, vec, docids, LANGS, 2)
    np.testing.assert_allclose(sums.sum_rows(0, 5, None, 2), want, rtol=2e-3, atol=2e-2)


def test_alpha_zero_is_bitwise_baseline_and_fusion_formula(tmp_path: Path) -> None:
    docids = [f"d{i}" for i in range(9)]
    recs = _records(docids, drop={("d2", "fi", 0), ("d2", "fi", 1)})
    embed, vec = _embedder()
    cfg = QuerySumsConfig(languages=LANGS, n_max=N_MAX, dtype="fp32", per_language=True, shard_rows=4)
    sums = build_query_sums(recs, embed, docids, tmp_path, cfg, inputs=INPUTS)
    p = np.random.default_rng(0).standard_normal((9, DIM)).astype(np.float32)
    baseline = p.copy()
    for mode in ("sum", "mean"):
        out = fuse(p, sums, Fusion(0.0, 2, mode, ("ar",)))
        assert out.dtype == p.dtype and out.tobytes() == baseline.tobytes()
    t0 = FusionTransform(sums, Fusion(0.0, 3))
    assert t0(0, docids, p).tobytes() == baseline.tobytes()
    # sum mode: the reference formula, chunk by chunk == whole matrix
    want_sum, want_cnt = _brute(recs, vec, docids, ("ar", "fi"), 2)
    ref = (1 - 0.3) * p.astype(np.float64) + 0.3 * want_sum
    t = FusionTransform(sums, Fusion(0.3, 2, "sum", ("ar", "fi")))
    chunks = np.concatenate([t(a, docids[a : a + 2], p[a : a + 2]) for a in range(0, 9, 2)])
    np.testing.assert_allclose(chunks, ref, rtol=1e-5, atol=1e-5)
    assert chunks.dtype == np.float32
    # mean mode: the sum divided by how many queries that passage really has (d2 has fewer)
    assert want_cnt[2] == 2 and want_cnt[0] == 4
    ref_mean = (1 - 0.3) * p + 0.3 * want_sum / want_cnt[:, None]
    np.testing.assert_allclose(
        fuse(p, sums, Fusion(0.3, 2, "mean", ("ar", "fi"))), ref_mean, rtol=1e-5, atol=1e-5
    )
    # with equal counts, mean == sum with alpha / count inside the alpha term
    full = np.full(9, 4)
    np.testing.assert_allclose(
        fuse_arrays(p, want_sum, 0.3, "mean", full),
        (1 - 0.3) * p + (0.3 / 4) * want_sum,
        rtol=1e-5,
        atol=1e-6,
    )
    # blockwise in-place fusion gives exactly the bits of the whole-matrix float32 formula
    q32 = want_sum.astype(np.float32)
    naive = p * np.float32(1 - 0.3) + np.float32(0.3) * q32
    assert fuse_arrays(p, q32, 0.3).tobytes() == naive.tobytes()
    assert p.tobytes() == baseline.tobytes()  # inputs untouched


def test_transform_rejects_misaligned_ids_and_bad_settings(tmp_path: Path) -> None:
    docids = [f"d{i}" for i in range(4)]
    embed, _ = _embedder()
    sums = build_query_sums(
        _records(docids),
        embed,
        docids,
        tmp_path,
        QuerySumsConfig(languages=LANGS, n_max=N_MAX),
        inputs=INPUTS,
    )
    p = np.ones((2, DIM), dtype=np.float32)
    with pytest.raises(XqgInputError, match="do not match"):
        FusionTransform(sums, Fusion(0.1, 2))(1, ["d0", "d1"], p)
    with pytest.raises(XqgInputError, match=r"augmentation\.n"):
        FusionTransform(sums, Fusion(0.1, 4))
    with pytest.raises(XqgInputError, match=r"augmentation\.languages"):
        FusionTransform(sums, Fusion(0.1, 2, languages=("ar", "ja")))  # ja has no stored sums
    t = FusionTransform(sums, Fusion(0.01, 2, "mean", LANGS))
    assert (t.fusion.alpha, t.fusion.n, t.fusion.mode) == (0.01, 2, "mean")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"alpha": -0.5, "n": 2}, "alpha"),
        ({"alpha": 1.5, "n": 2}, "alpha"),
        ({"alpha": "0.1", "n": 2}, "alpha"),
        ({"alpha": 0.1, "n": 0}, "n"),
        ({"alpha": 0.1, "n": 2, "mode": "max"}, "mode"),
        ({"alpha": 0.1, "n": 2, "languages": ()}, "languages"),
        ({"alpha": 0.1, "n": 2, "languages": ("xx",)}, "languages"),
    ],
)
def test_fusion_settings_are_validated(kwargs: dict, field: str) -> None:
    with pytest.raises(XqgInputError, match=rf"augmentation\.{field}"):
        Fusion(**kwargs)


def test_fusion_json_is_the_config_dict_the_run_fingerprint_always_used() -> None:
    for aug in (
        {"enabled": True, "alpha": 0.01, "n": 5, "mode": "sum", "languages": ["ar", "bn", "fi"], "sums": {}},
        {"alpha": 0, "n": 3, "mode": "mean", "languages": None},  # an int alpha stays an int
        {"alpha": 1, "n": 1, "mode": "sum", "languages": [" ar"]},
    ):
        old = {k: aug.get(k) for k in ("alpha", "n", "mode", "languages")}  # what evaluate.py hashed before
        langs = aug["languages"]
        fusion = Fusion(aug["alpha"], aug["n"], aug["mode"], tuple(langs) if langs is not None else None)
        if langs is not None:
            old["languages"] = [x.strip() for x in langs]  # normalised codes (" ar" is the same language)
        assert canonical_json(fusion.to_json()) == canonical_json(old)


def test_resume_skips_finished_shards_and_reuses_complete(tmp_path: Path) -> None:
    docids = [f"d{i}" for i in range(10)]
    recs = _records(docids)
    cfg = QuerySumsConfig(languages=LANGS, n_max=N_MAX, dtype="fp32", shard_rows=4)
    embed, vec = _embedder()

    class Killed(RuntimeError):
        pass

    def dying(recs_):
        for i, r in enumerate(recs_):
            if r[0] == "d5" and i > 0:  # die inside shard 1, after shard 0 was written
                raise Killed
            yield r

    with pytest.raises(Killed):
        build_query_sums(dying(recs), embed, docids, tmp_path, cfg, inputs=INPUTS, embed_batch=5)
    art = query_sums_artifact(tmp_path, cfg, docids=docids, inputs=INPUTS)
    assert not art.complete and (art.path / "shards" / "00000.json").exists()
    assert not (art.path / "shards" / "00001.json").exists()
    assert not list((art.path / "shards").glob(".*"))  # no temp files left behind
    calls: list[int] = []
    embed2, _ = _embedder(calls)
    sums = build_query_sums(recs, embed2, docids, tmp_path, cfg, inputs=INPUTS, embed_batch=1000)
    assert sum(calls) == len(recs) - 4 * len(LANGS) * N_MAX  # shard 0 (4 passages) not re-encoded
    want, _ = _brute(recs, vec, docids, LANGS, N_MAX)
    np.testing.assert_allclose(sums.sum_rows(0, 10), want, rtol=1e-5, atol=1e-5)
    calls.clear()
    again = build_query_sums(recs, embed2, docids, tmp_path, cfg, inputs=INPUTS)
    assert calls == [] and again.path == sums.path
    # a change that matters gives a new artifact
    other = query_sums_artifact(tmp_path, cfg, docids=docids, inputs={**INPUTS, "generated": "g2"})
    assert other.path != sums.path


def test_bad_input_is_one_clear_error(tmp_path: Path) -> None:
    docids = ["a", "b", "c"]
    embed, _ = _embedder()
    cfg = QuerySumsConfig(languages=LANGS, n_max=N_MAX, shard_rows=1)
    with pytest.raises(XqgInputError, match="docid 'zz'"):
        build_query_sums([("zz", "ar", 0, "x")], embed, docids, tmp_path, cfg, inputs=INPUTS)
    with pytest.raises(XqgInputError, match="duplicate"):
        build_query_sums(
            [("a", "ar", 0, "x"), ("a", "ar", 0, "y")], embed, docids, tmp_path / "2", cfg, inputs=INPUTS
        )
    with pytest.raises(XqgInputError, match="row order"):
        build_query_sums(
            [("b", "ar", 0, "x"), ("a", "ar", 0, "y")], embed, docids, tmp_path / "3", cfg, inputs=INPUTS
        )
    # skipped records are counted, not silently mixed in
    recs = [
        ("a", "ar", 0, "x"),
        ("a", "ar", 7, "y"),
        ("a", "en", 0, "z"),
        ("zz", "ar", 0, "w"),
        ("c", "bn", 1, "v"),
    ]
    sums = build_query_sums(recs, embed, docids, tmp_path / "4", cfg, inputs=INPUTS, strict_docids=False)
    c = sums.counts
    assert (c["skipped_beyond_n_max"], c["skipped_other_language"], c["skipped_unknown_docid"]) == (1, 1, 1)
    assert c["queries"] == 2 and c["passages_without_queries"] == 1
    np.testing.assert_array_equal(sums.count_rows(0, 3, None, 1), [1, 0, 0])
    np.testing.assert_array_equal(sums.count_rows(0, 3, None, 2), [1, 0, 1])
    assert not sums.sum_rows(1, 2).any()
