"""Benchmark the query-sum artifact: bytes per passage vs the reference's 35 fp32 embeddings, build and read speed.

Builds real :func:`xqg.retrieval.query_sums_build.build_query_sums` artifacts from random generated-query embeddings (the query
encoder is replaced by a lookup, so the numbers are the cost of our bookkeeping, not of the model) for each
layout, measures bytes on disk per passage, build throughput (queries per second) and the per-trial read cost
(:meth:`QuerySums.sum_rows` over every row: all languages, and one 3-language subset with per-language sums).

    python benchmarks/bench_augment.py [--passages 20000] [--dim 768]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from xqg.retrieval.query_sums import QuerySumsConfig, reference_bytes_per_passage
from xqg.retrieval.query_sums_build import build_query_sums

LANGS = ("ar", "bn", "fi", "ja", "ko", "ru", "te")
N_MAX = 5
CORPUS_18M = 18_000_000  # about the size of the XOR-TyDi English Wikipedia corpus (DESIGN.md: "18M")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--passages", type=int, default=20_000)
    ap.add_argument("--dim", type=int, default=768)
    args = ap.parse_args()
    os.environ.setdefault("TQDM_DISABLE", "1")

    N, D = args.passages, args.dim
    ids = [f"p{i}" for i in range(N)]
    rng = np.random.default_rng(0)
    # one random embedding per (lang, k) "slot" row block, reused: cheap to hold, same arithmetic as real ones
    table = rng.standard_normal((len(LANGS) * N_MAX, 4096, D), dtype=np.float32)

    def records():
        for i, d in enumerate(ids):
            for li, lang in enumerate(LANGS):
                for k in range(N_MAX):
                    yield d, lang, k, f"{i} {li * N_MAX + k}"

    def embed(texts: list[str]) -> np.ndarray:
        parts = np.array([s.split() for s in texts], dtype=np.int64)
        return table[parts[:, 1], parts[:, 0] % 4096]

    layouts = {
        "fp16, all languages (default)": QuerySumsConfig(dtype="fp16"),
        "fp32, all languages": QuerySumsConfig(dtype="fp32"),
        "fp16, per language": QuerySumsConfig(dtype="fp16", per_language=True),
    }
    ref = reference_bytes_per_passage(D)
    rows = []
    work = Path(tempfile.mkdtemp(prefix="xqg-bench-augment-"))
    try:
        for name, cfg in layouts.items():
            t = time.perf_counter()
            sums = build_query_sums(
                records(),
                embed,
                ids,
                work,
                cfg,
                inputs={"retriever": "b", "generated": name},
                embed_batch=35 * 512,
            )
            build = time.perf_counter() - t
            disk = sum(
                f.stat().st_size
                for f in sums.path.rglob("*.npy")
                if ".counts." not in f.name and ".ids." not in f.name
            )
            sums.sum_rows(0, min(N, 1024), None, N_MAX)  # warm-up (first maps): not a trial cost
            t = time.perf_counter()
            for a in range(0, N, 65_536):
                sums.sum_rows(a, min(a + 65_536, N), None, N_MAX)
            read_all = time.perf_counter() - t
            read_sub = None
            if cfg.per_language:
                t = time.perf_counter()
                for a in range(0, N, 65_536):
                    sums.sum_rows(a, min(a + 65_536, N), ("ar", "ja", "te"), 3)
                read_sub = time.perf_counter() - t
            rows.append(
                {
                    "layout": name,
                    "bytes_per_passage": round(disk / N),  # npy headers amortised
                    "x_smaller_than_reference": round(ref / (disk / N), 2),
                    "at_18M_GB": round(disk / N * CORPUS_18M / 1e9, 1),
                    "build_queries_per_s": round(N * 35 / build),
                    "read_all_rows_s": round(read_all, 3),
                    "read_3_lang_subset_n3_s": None if read_sub is None else round(read_sub, 3),
                }
            )
    finally:
        shutil.rmtree(work)
    out = {
        "passages": N,
        "dim": D,
        "queries_per_passage": 35,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, numpy {np.__version__}",
        "reference_bytes_per_passage": ref,
        "reference_at_18M_GB": round(ref * CORPUS_18M / 1e9, 1),
        "layouts": rows,
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
