"""Benchmark one xQG sweep trial: our path vs recomputing everything per trial the reference's way.

Setup (synthetic, timed once, not part of a trial): ``--passages`` passages of ~100 pseudo-English words (DPR
TSV; some contain dev answers so that hits happen), random passage embeddings (``--dim``, 768 = mBERT/XLM-R
base) in an fp16 :class:`xqg.retrieval.embeddings.EmbeddingStore`, 35 generated-query embeddings per passage (7 languages x 5)
written as 35 fp32 ``.npy`` matrices (the reference's layout, as npy instead of pickle), our fp16 prefix sums
built from them (:func:`xqg.retrieval.query_sums_build.build_query_sums`), and the 2,110 XOR-TyDi dev questions as queries (random
query embeddings).

Trial, ours: an alpha sweep at n = 5 in one process (trial i: alpha x (i + 1)), two ways. Fused search: fuse chunk
by chunk from the cached prefix sums inside the search (:class:`FusionTransform` -> :func:`xqg.retrieval.index.search`
with ``reuse_scores=False``). Kept scores (the default on the CPU, :mod:`xqg.retrieval.fused_scores`): the first
trial computes ``Q.P`` and ``Q.S`` once, later trials combine them. Then run in memory ->
:func:`xqg.evaluation.scoring.score_run` with its warm token cache.
Trial, reference: load p and the 35 fp32 query matrices -> ``(1 - alpha) * p + alpha * sum`` -> write the fused
embeddings -> load them, faiss ``IndexFlatIP`` search -> write the run file -> read it -> score without a token
cache (an empty token cache per trial: the official script tokenises every ctx every time; ours tokenises
in parallel, so this favours the reference).
Bare search: faiss ``IndexFlatIP`` over the in-memory fp32 passage matrix, nothing else; bare matmul: torch's
``Q @ P.T`` of the same shape.

    python benchmarks/bench_sweep_trial.py [--passages 100000] [--dim 768] [--trials 3] [--depth 100]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from xqg.core.artifacts import ArtifactDir
from xqg.data.corpus import open_corpus
from xqg.data.formats.runs import read_run, write_run
from xqg.data.formats.xor import read_xor_questions
from xqg.retrieval.embeddings import ShardPlan, build_store, memory_rows
from xqg.retrieval.fusion import Fusion, FusionTransform
from xqg.retrieval.index import search
from xqg.retrieval.query_sums import QuerySumsConfig, reference_bytes_per_passage
from xqg.retrieval.query_sums_build import build_query_sums
from xqg.retrieval.resident import CACHE

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("XQG_SHARED_DATA", REPO.parent / "shared" / "data")).resolve()
QUESTIONS = SHARED / "xor-tydi" / "xor_dev_retrieve_eng_span_v1_1.jsonl"
LANGS = ("ar", "bn", "fi", "ja", "ko", "ru", "te")
N_MAX = 5


def _words(rng: random.Random, n: int) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return ["".join(rng.choice(letters) for _ in range(rng.randint(2, 9))) for _ in range(n)]


def build_corpus(path: Path, n: int, answers: list[str], seed: int) -> list[str]:
    rng = random.Random(seed)
    vocab = _words(rng, 20_000)
    ids = [f"p{i}" for i in range(n)]
    with open(path, "w", encoding="utf-8") as f:
        f.write("id\ttext\ttitle\n")
        for i, d in enumerate(ids):
            words = rng.choices(vocab, k=100)
            if answers and i % 7 == 0:
                words[rng.randrange(100)] = rng.choice(answers)
            f.write(f"{d}\t{' '.join(words)}, end.\t{rng.choice(vocab).title()}\n")
    return ids


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--passages", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--reference-trials", type=int, default=2)
    ap.add_argument("--depth", type=int, default=100)
    ap.add_argument("--alpha", type=float, default=0.01)
    ap.add_argument("--workdir", type=Path, default=REPO / "benchmarks" / "work" / "sweep_trial")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (10+ GB at 100k x 768)")
    args = ap.parse_args()
    os.environ.setdefault("NLTK_DATA", str(SHARED / "nltk_data"))
    os.environ.setdefault("TQDM_DISABLE", "1")

    import faiss

    from xqg.evaluation.scoring import score_run  # after NLTK_DATA is set: nltk reads it on import

    work = args.workdir
    if work.exists():
        shutil.rmtree(work)
    (work / "ref").mkdir(parents=True)
    cache = work / "cache"
    setup: dict[str, float] = {}
    N, D = args.passages, args.dim

    t = time.perf_counter()
    questions = read_xor_questions(QUESTIONS)
    answers = sorted({a for q in questions for a in q.answers if a not in ("yes", "no") and len(a) > 3})
    ids = build_corpus(work / "corpus.tsv", N, answers, seed=0)
    corpus = open_corpus(work / "corpus.tsv", cache)
    setup["corpus (write TSV + build store)"] = time.perf_counter() - t

    rng = np.random.default_rng(0)
    t = time.perf_counter()
    P = rng.standard_normal((N, D), dtype=np.float32)
    np.save(work / "ref" / "p.npy", P)
    art = ArtifactDir.for_spec(cache, "embeddings", config={"bench": N, "dim": D}, inputs={})
    row_of = {d: i for i, d in enumerate(ids)}
    passages = build_store(
        art,
        memory_rows(ids, ids),
        ShardPlan(N, 100_000),
        lambda texts: P[[row_of[x] for x in texts]],
        dtype="fp16",
    )
    assert passages is not None
    setup["passage embeddings (fp16 store + fp32 npy)"] = time.perf_counter() - t

    t = time.perf_counter()
    for li, _lang in enumerate(LANGS):
        for k in range(N_MAX):
            q = (0.5 * P + rng.standard_normal((N, D), dtype=np.float32)).astype(np.float32)
            np.save(work / "ref" / f"q_{li}_{k}.npy", q)
    del q
    setup["35 generated-query matrices (fp32 npy, reference layout)"] = time.perf_counter() - t

    # our prefix sums, built through the real build path from the 35 matrices ("embedding" = row lookup)
    qmaps = [
        [np.load(work / "ref" / f"q_{li}_{k}.npy", mmap_mode="r") for k in range(N_MAX)]
        for li in range(len(LANGS))
    ]

    def records():
        for i, d in enumerate(ids):
            for li, lang in enumerate(LANGS):
                for k in range(N_MAX):
                    yield d, lang, k, f"{i} {li} {k}"

    def embed(texts: list[str]) -> np.ndarray:
        parts = np.array([list(map(int, s.split())) for s in texts])
        out = np.empty((len(texts), D), dtype=np.float32)
        for li in range(len(LANGS)):
            for k in range(N_MAX):
                m = (parts[:, 1] == li) & (parts[:, 2] == k)
                if m.any():
                    out[m] = qmaps[li][k][parts[m, 0]]
        return out

    t = time.perf_counter()
    sums = build_query_sums(
        records(),
        embed,
        ids,
        cache,
        QuerySumsConfig(n_max=N_MAX, dtype="fp16", shard_rows=8192),
        inputs={"retriever": "bench", "generated": "bench"},
        embed_batch=35 * 512,
    )
    setup["our prefix sums (3.5M lookups + sums, no model)"] = time.perf_counter() - t
    qmaps.clear()  # drop the memory maps

    queries = rng.standard_normal((len(questions), D), dtype=np.float32)
    qids = [q.qid for q in questions]

    def bare_search() -> float:
        t0 = time.perf_counter()
        index = faiss.IndexFlatIP(D)
        index.add(P)
        index.search(queries, args.depth)
        return time.perf_counter() - t0

    t = time.perf_counter()
    cold = score_run(questions, search(queries, passages, args.depth).to_run(qids), corpus, cache_dir=cache)
    setup["token cache warm-up (baseline run scored cold)"] = time.perf_counter() - t
    print(f"baseline macro R@2kt {cold.macro[2]:.2f}", file=sys.stderr)

    def bare_matmul() -> float:
        qt, pt = torch.from_numpy(queries), torch.from_numpy(P)
        t0 = time.perf_counter()
        qt @ pt.T
        return time.perf_counter() - t0

    def ours(trial: int, reuse: bool) -> dict[str, float]:
        """One trial of an alpha sweep at n = 5 (trial i: alpha x (i + 1)), as a sweep process runs them."""
        t0 = time.perf_counter()
        fusion = FusionTransform(sums, Fusion(args.alpha * (trial + 1), N_MAX))
        res = search(queries, passages, args.depth, transform=fusion, reuse_scores=reuse)
        run = res.to_run(qids)
        t1 = time.perf_counter()
        score_run(questions, run, corpus, cache_dir=cache)
        t2 = time.perf_counter()
        return {"fuse+search": t1 - t0, "score (warm cache)": t2 - t1, "trial": t2 - t0}

    def reference() -> dict[str, float]:
        t0 = time.perf_counter()
        p = np.load(work / "ref" / "p.npy")
        total = np.zeros_like(p)
        for li in range(len(LANGS)):
            for k in range(N_MAX):
                total += np.load(work / "ref" / f"q_{li}_{k}.npy")
        fused = (1 - args.alpha) * p + args.alpha * total
        np.save(work / "ref" / "fused.npy", fused)
        del p, total, fused
        t1 = time.perf_counter()
        index = faiss.IndexFlatIP(D)
        index.add(np.load(work / "ref" / "fused.npy"))
        scores, rows = index.search(queries, args.depth)
        run = {
            q: [(ids[r], float(s)) for r, s in zip(rr, ss, strict=True)]
            for q, rr, ss in zip(qids, rows, scores, strict=True)
        }
        write_run(work / "ref" / "run.tsv", run)
        t2 = time.perf_counter()
        # the official script tokenises every ctx on every call: score with an empty token cache each trial
        fresh = work / "ref" / f"tokens_{time.monotonic_ns()}"
        score_run(questions, read_run(work / "ref" / "run.tsv"), corpus, token_cache_dir=fresh)
        t3 = time.perf_counter()
        shutil.rmtree(fresh, ignore_errors=True)
        return {
            "fuse+write": t1 - t0,
            "search+write run": t2 - t1,
            "read run+score (cold)": t3 - t2,
            "trial": t3 - t0,
        }

    bare = [bare_search() for _ in range(args.trials)]
    matmul = statistics.median(bare_matmul() for _ in range(args.trials))
    fused = [ours(i, reuse=False) for i in range(args.trials)]
    CACHE.clear()
    kept = [ours(i, reuse=True) for i in range(args.trials)]  # the first computes Q.P and Q.S, later combine
    ref = [reference() for _ in range(args.reference_trials)]

    def med(rows: list[dict[str, float]]) -> dict[str, float]:
        return {k: statistics.median(r[k] for r in rows) for k in rows[0]}

    f, first, m, r, b = med(fused), kept[0], med(kept[1:]), med(ref), statistics.median(bare)
    ours_bpp = sums.nbytes / N
    out = {
        "passages": N,
        "dim": D,
        "questions": len(questions),
        "depth": args.depth,
        "alpha": args.alpha,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, faiss {faiss.__version__}, numpy {np.__version__}",
        "setup_s": {k: round(v, 2) for k, v in setup.items()},
        "bare_faiss_search_s": round(b, 3),
        "bare_torch_matmul_s": round(matmul, 3),
        "ours_fused_search_s": {k: round(v, 3) for k, v in f.items()},
        "ours_kept_scores_first_trial_s": {k: round(v, 3) for k, v in first.items()},
        "ours_kept_scores_later_trials_s": {k: round(v, 3) for k, v in m.items()},
        "reference_s": {k: round(v, 3) for k, v in r.items()},
        "speedup_vs_reference": round(r["trial"] / m["trial"], 1),
        "speedup_vs_reference_first_trial": round(r["trial"] / first["trial"], 1),
        "speedup_vs_reference_fused_search": round(r["trial"] / f["trial"], 1),
        "trial_over_bare_matmul": round(m["trial"] / matmul, 2),
        "trial_over_bare_search": round(m["trial"] / b, 2),
        "bytes_per_passage": {
            "ours_fp16_prefix_sums": ours_bpp,
            "reference_35_fp32": reference_bytes_per_passage(D),
        },
    }
    print(json.dumps(out, indent=2))
    if not args.keep:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
