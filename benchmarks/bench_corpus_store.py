"""Benchmark the corpus store: build time, bytes on disk, random-access lookups/s, peak memory of the build.

Writes a synthetic DPR TSV (``id<TAB>text<TAB>title`` with a header; English Wikipedia-like passages of ~70
words from :func:`xqg.data.synthetic.iter_synthetic_passages`), then builds its store with
:func:`xqg.data.corpus.open_corpus` in a child process, so the reported peak RSS is the build's alone (target:
under 1 GB whatever the corpus size), then measures lookups by docid, by row, and a full ordered scan.

    python benchmarks/bench_corpus_store.py [--passages 1000000] [--workdir DIR] [--out results/corpus_store.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _child_write(tsv: str, n: int) -> None:
    from xqg.data.formats.dpr import write_dpr_tsv
    from xqg.data.synthetic import iter_synthetic_passages

    write_dpr_tsv(tsv, iter_synthetic_passages(n, seed=1))


def _child_build(tsv: str, cache: str) -> None:
    from xqg.data.corpus import open_corpus

    t = time.perf_counter()
    store = open_corpus(tsv, cache_dir=cache)
    took = time.perf_counter() - t
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {"build_s": took, "peak_rss_mb": peak_kb / 1024, "store": str(store.path), "n": len(store)}
        )
    )


def _run_child(*args: str) -> tuple[str, float]:
    t = time.perf_counter()
    out = subprocess.run([sys.executable, __file__, *args], check=True, capture_output=True, text=True)
    return out.stdout, time.perf_counter() - t


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--passages", type=int, default=1_000_000)
    ap.add_argument(
        "--workdir", type=Path, default=None, help="where the TSV and store go (default: a temp dir)"
    )
    ap.add_argument("--lookups", type=int, default=200_000)
    ap.add_argument("--out", type=Path, default=None, help="append a markdown result block here")
    ap.add_argument("--_child", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args()
    os.environ.setdefault("TQDM_DISABLE", "1")
    if args._child:
        kind, *rest = args._child
        if kind == "write":
            _child_write(rest[0], int(rest[1]))
        else:
            _child_build(rest[0], rest[1])
        return

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench_corpus_"))
    work.mkdir(parents=True, exist_ok=True)
    tsv = work / f"synthetic_{args.passages}.tsv"
    cache = work / "cache"
    shutil.rmtree(cache, ignore_errors=True)
    write_s = 0.0
    if not tsv.exists():
        _, write_s = _run_child("--_child", "write", str(tsv), str(args.passages))
    out, _ = _run_child("--_child", "build", str(tsv), str(cache))
    build = json.loads(out.strip().splitlines()[-1])

    from xqg.data.corpus import open_corpus

    t = time.perf_counter()
    store = open_corpus(tsv, cache_dir=cache)
    open_s = time.perf_counter() - t
    n = len(store)
    rng = random.Random(0)
    ids = [store.docid_at(rng.randrange(n)) for _ in range(min(args.lookups, 20_000))]
    ids = (ids * (args.lookups // len(ids) + 1))[: args.lookups]
    rng.shuffle(ids)
    t = time.perf_counter()
    for d in ids:
        store.get(d)
    get_per_s = len(ids) / (time.perf_counter() - t)
    rows = [rng.randrange(n) for _ in range(args.lookups)]
    t = time.perf_counter()
    for r in rows:
        store.row(r)
    row_per_s = len(rows) / (time.perf_counter() - t)
    t = time.perf_counter()
    scanned = sum(len(b) for b in store.iter_batches(4096))
    scan_per_s = scanned / (time.perf_counter() - t)
    tsv_bytes = tsv.stat().st_size
    store_bytes = _size(Path(build["store"]))
    result = {
        "passages": n,
        "tsv_mb": tsv_bytes / 2**20,
        "write_tsv_s": write_s,
        "build_s": build["build_s"],
        "build_rows_per_s": n / build["build_s"],
        "build_peak_rss_mb": build["peak_rss_mb"],
        "store_mb": store_bytes / 2**20,
        "store_over_tsv": store_bytes / tsv_bytes,
        "open_built_store_s": open_s,
        "get_by_docid_per_s": get_per_s,
        "row_per_s": row_per_s,
        "scan_passages_per_s": scan_per_s,
    }
    print(json.dumps(result, indent=2))
    if args.out:
        cmd = f"python benchmarks/bench_corpus_store.py --passages {args.passages}"
        lines = [
            f"\n## {n:,} passages ({time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} CPUs, "
            f"Python {platform.python_version()})\n",
            f"Command: `{cmd}`\n",
            "| measure | value |",
            "| --- | --- |",
            f"| TSV size | {result['tsv_mb']:.0f} MiB |",
            f"| build time (stream + index) | {result['build_s']:.1f} s ({result['build_rows_per_s']:,.0f} rows/s) |",
            f"| peak RSS of the build process | {result['build_peak_rss_mb']:.0f} MiB |",
            f"| store on disk | {result['store_mb']:.0f} MiB ({result['store_over_tsv']:.2f} x the TSV) |",
            f"| open an already built store | {result['open_built_store_s'] * 1000:.0f} ms |",
            f"| random `get(docid)` | {result['get_by_docid_per_s']:,.0f} / s |",
            f"| random `row(i)` | {result['row_per_s']:,.0f} / s |",
            f"| ordered scan (`iter_batches(4096)`) | {result['scan_passages_per_s']:,.0f} passages / s |",
            "",
        ]
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "a", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
