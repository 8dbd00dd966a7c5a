"""Benchmark the XOR-Retrieve evaluator: xqg.evaluation.scoring vs a straightforward reimplementation of the official loop.

Two workloads:
1. the shared parity predictions file (600 questions x 45 ctxs, real English passages);
2. a run over a 100k-passage corpus built here from the parity file's real English ctx texts (sentences
   sampled and recombined into ~100-word passages, the 629 originals kept), written as DPR TSV, with a run of
   100 passages per dev question (2,110 questions; the parity ctxs of a question are mixed into its ranking so
   that hits happen). Ours is timed cold (empty token cache) and warm (cache filled by the cold run).

Both implementations must agree on every per-question hit; the benchmark fails otherwise.

    NLTK_DATA=../shared/data/nltk_data python benchmarks/bench_eval.py [--passages 100000] [--depth 100]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import random
import re
import shutil
import statistics
import sys
import time
from pathlib import Path

from nltk.tokenize import word_tokenize

from xqg.data.corpus import open_corpus
from xqg.data.formats.dpr import write_dpr_tsv
from xqg.data.formats.runs import read_run, write_run
from xqg.data.formats.xor import read_xor_questions
from xqg.data.records import Passage
from xqg.evaluation.scoring import evaluate_predictions, score_run
from xqg.evaluation.token_cache import available_cores
from xqg.evaluation.xor_rule import ensure_punkt

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("XQG_SHARED_DATA", REPO.parent / "shared" / "data")).resolve()
QUESTIONS = SHARED / "xor-tydi" / "xor_dev_retrieve_eng_span_v1_1.jsonl"
PARITY = SHARED.parent / "parity" / "xor_dev_predictions_a.json.gz"


def official_loop(predictions: list[dict], qid2answers: dict[str, list[str]], ks=(2, 5)) -> dict:
    """The official evaluation, written the straightforward way (one pass per k, tokenise every ctx read)."""
    out: dict = {}
    hits: dict = {}
    for k in ks:
        max_tokens = k * 1000
        per_lang: dict[str, dict[str, int]] = {}
        hits[k] = {}
        for item in predictions:
            lang = item["lang"]
            per_lang.setdefault(lang, {"count": 0, "hit": 0})
            if item["id"] not in qid2answers:
                continue
            span = [a for a in qid2answers[item["id"]] if a not in ["yes", "no"]]
            if not span:
                continue
            per_lang[lang]["count"] += 1
            tokens: list[str] = []
            for ctx in item["ctxs"]:
                tokens += word_tokenize(ctx)
                if len(tokens) >= max_tokens:
                    break
            concat = " ".join(tokens[:max_tokens])
            hit = any(a in concat for a in span)
            hits[k][item["id"]] = hit
            per_lang[lang]["hit"] += int(hit)
        res = {lang: r["hit"] / r["count"] * 100 for lang, r in per_lang.items() if r["count"] > 0}
        res["macro"] = statistics.mean(res.values())
        out[f"R@{k}kt"] = res
    return {"metrics": out, "hits": hits}


def build_corpus(work: Path, n_passages: int, seed: int) -> tuple[Path, list[str], dict[str, str]]:
    """DPR TSV of ``n_passages`` passages from the parity file's English texts; returns (path, docids,
    text -> docid of the originals)."""
    preds = json.load(gzip.open(PARITY))
    originals = list(dict.fromkeys(c.replace("\n", " ") for p in preds for c in p["ctxs"]))
    sentences = [s for t in originals for s in re.split(r"(?<=[.!?])\s+", t) if s.strip()]
    rng = random.Random(seed)
    path = work / f"corpus_{n_passages}.tsv"
    orig_ids = {t: f"o{i}" for i, t in enumerate(originals)}
    docids = list(orig_ids.values())

    def passages():
        yield from (Passage(d, f"Original {d}", t) for t, d in orig_ids.items())
        for i in range(n_passages - len(originals)):
            words: list[str] = []
            while len(words) < 100:
                j = rng.randrange(len(sentences))
                words += " ".join(sentences[j : j + rng.randint(1, 4)]).split()
            docid = f"s{i}"
            docids.append(docid)
            yield Passage(docid, f"Synthetic {i}", " ".join(words[: rng.randint(90, 130)]))

    if not path.exists():
        write_dpr_tsv(path, passages())
    else:  # the docid list is deterministic: rebuild it without rewriting the file
        docids += [f"s{i}" for i in range(n_passages - len(originals))]
    return path, docids, orig_ids


def build_run(work: Path, docids: list[str], orig_ids: dict[str, str], depth: int, seed: int) -> Path:
    rng = random.Random(seed + 1)
    preds = {p["id"]: p for p in json.load(gzip.open(PARITY))}
    run = {}
    for q in read_xor_questions(QUESTIONS):
        ranked = [orig_ids[c.replace("\n", " ")] for c in preds[q.qid]["ctxs"]] if q.qid in preds else []
        ranked = list(dict.fromkeys(ranked))[: depth // 2]
        while len(ranked) < depth:
            d = docids[rng.randrange(len(docids))]
            if d not in ranked:
                ranked.insert(rng.randrange(len(ranked) + 1), d)
        run[q.qid] = [(d, float(depth - i)) for i, d in enumerate(ranked)]
    path = work / f"run_depth{depth}.tsv"
    write_run(path, run)
    return path


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--passages", type=int, default=100_000)
    ap.add_argument("--depth", type=int, default=100)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--workers", type=int, default=0, help="0 = all cores")
    ap.add_argument("--work-dir", default=str(REPO / "benchmarks" / "work"))
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "eval.md"))
    args = ap.parse_args()

    ensure_punkt(SHARED / "nltk_data")
    load_start = os.getloadavg()[0]
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    qid2answers = {q.qid: list(q.answers) for q in read_xor_questions(QUESTIONS)}
    rows: list[tuple[str, str, float, str]] = []

    # 1. parity predictions file
    preds = json.load(gzip.open(PARITY))
    off, t_off = timed(lambda: official_loop(preds, qid2answers))
    ours, t_ours = timed(
        lambda: evaluate_predictions(QUESTIONS, PARITY, allow_missing=True, workers=args.workers)
    )
    for k in (2, 5):
        assert ours.hits[k] == off["hits"][k], f"parity file: per-question hits differ at k={k}"
    rows.append(("parity file (600 q x 45 ctxs)", "official loop", t_off, ""))
    rows.append(
        (
            "parity file (600 q x 45 ctxs)",
            "xqg (read + score)",
            t_ours,
            f"{t_off / t_ours:.1f}x; {int(ours.stats['tokenized'])} distinct ctxs tokenised",
        )
    )
    print(rows[-2], rows[-1], flush=True)

    # 2. run over a 100k-passage corpus
    corpus_path, docids, orig_ids = build_corpus(work, args.passages, args.seed)
    run_path = build_run(work, docids, orig_ids, args.depth, args.seed)
    store_dir = work / "store"
    shutil.rmtree(store_dir, ignore_errors=True)
    store, t_store = timed(lambda: open_corpus(corpus_path, store_dir))
    run = read_run(run_path)

    def official_run() -> dict:
        texts = {d: store.get(d).text for qid in run for d, _ in run[qid]}  # corpus text, no title
        qlang = {q.qid: q.lang for q in read_xor_questions(QUESTIONS)}
        items = [
            {"id": qid, "lang": qlang[qid], "ctxs": [texts[d] for d, _ in docs]} for qid, docs in run.items()
        ]
        return official_loop(items, qid2answers)

    off_run, t_off_run = timed(official_run)
    print("official run loop", t_off_run, flush=True)
    cache = work / "cache"
    shutil.rmtree(cache, ignore_errors=True)
    cold, t_cold = timed(lambda: score_run(QUESTIONS, run_path, store, cache_dir=cache, workers=args.workers))
    warm_times = []
    for _ in range(3):
        warm, t_warm = timed(
            lambda: score_run(QUESTIONS, run_path, store, cache_dir=cache, workers=args.workers)
        )
        warm_times.append(t_warm)
    for k in (2, 5):
        assert cold.hits[k] == off_run["hits"][k], f"run: per-question hits differ at k={k} (cold)"
        assert warm.hits[k] == off_run["hits"][k], f"run: per-question hits differ at k={k} (warm)"
    t_warm = min(warm_times)
    label = f"run, {len(run)} q x {args.depth} over {args.passages // 1000}k passages"
    rows.append((label, "corpus store build (once per corpus)", t_store, ""))
    rows.append((label, "official loop (texts from the store)", t_off_run, ""))
    rows.append(
        (
            label,
            "xqg cold (empty token cache)",
            t_cold,
            f"{t_off_run / t_cold:.1f}x; {int(cold.stats['tokenized'])} passages tokenised",
        )
    )
    rows.append(
        (
            label,
            "xqg warm (token cache filled)",
            t_warm,
            f"{t_off_run / t_warm:.0f}x; best of 3: " + ", ".join(f"{t:.2f}" for t in warm_times),
        )
    )
    for r in rows[-4:]:
        print(r, flush=True)

    cmd = (
        "NLTK_DATA=../shared/data/nltk_data python benchmarks/bench_eval.py"
        + (f" --passages {args.passages}" if args.passages != 100_000 else "")
        + (f" --depth {args.depth}" if args.depth != 100 else "")
    )
    lines = [
        "# Evaluator benchmark (official XOR-Retrieve R@2kt + R@5kt)",
        "",
        f"Command: `{cmd}`",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {available_cores()} cores, Python "
        f"{platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Other engineers "
        f"were running tests on the same machine (1-minute load average {load_start:.1f} at the start, "
        f"{os.getloadavg()[0]:.1f} at the end, on {available_cores()} cores), so the timings are noisy.",
        "",
        "Both implementations score R@2kt and R@5kt; per-question hits were checked equal for every question.",
        "The official loop is the straightforward reimplementation (`official_loop` in the script): one pass "
        "per k, `word_tokenize` of every ctx it reads. Times in seconds.",
        "",
        "| workload | implementation | seconds | notes |",
        "|---|---|---:|---|",
        *[f"| {w} | {impl} | {t:.2f} | {note} |" for w, impl, t, note in rows],
        "",
        f"Macro R@2kt / R@5kt of the run: {warm.macro[2]:.2f} / {warm.macro[5]:.2f} (official loop: "
        f"{off_run['metrics']['R@2kt']['macro']:.2f} / {off_run['metrics']['R@5kt']['macro']:.2f}).",
        "",
    ]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    print(out.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
