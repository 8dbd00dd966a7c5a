"""``xqg-eval``: score XOR-Retrieve predictions or runs with the official R@kt, per language, every system after
the first tested against it (paired t-test, randomisation test; optional Holm correction), and, with ``--qrels``,
the trec_eval measures of the runs (MRR@10, Recall@k, nDCG@10, mAP@20 through ``ir_measures``). Writes the table
as text/Markdown, LaTeX (``--latex``), CSV (``--csv``), the per-question hits (``--per-query``) and JSON.

The argparse front of :mod:`xqg.evaluation.score_files` (flags -> ``ScoreOptions``). Bad input (a flag, a file,
an unwritable output) gives one line on stderr and exit code 2, checked before any file is scored."""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from xqg.core.artifacts import atomic_write_json, atomic_write_text
from xqg.core.errors import MissingResourceError, XqgInputError, place_error_message
from xqg.evaluation.qrels_measures import DEFAULT_MEASURES
from xqg.evaluation.score_files import ScoreOptions, ScoreReport, score_systems, system_names
from xqg.evaluation.significance import CORRECTIONS, TESTS
from xqg.evaluation.xor_rule import DEFAULT_KS

PROG = "xqg-eval"
STDOUT = "-"  # an output path meaning "print it instead of the text table"
#: ScoreOptions field -> the flag that sets it (errors name the flag).
FLAGS = {
    "ks": "--k",
    "permutations": "--permutations",
    "seed": "--seed",
    "level": "--level",
    "decimals": "--decimals",
    "workers": "--workers",
    "tests": "--tests",
    "correction": "--correction",
    "measures": "--measures",
}
#: output flags (argparse dest -> flag) that take a file, or ``-`` for stdout
OUTPUTS = {"json": "--json", "latex": "--latex", "csv": "--csv", "per_query": "--per-query"}


class _Parser(argparse.ArgumentParser):
    """argparse with its usage errors as one line (``xqg-eval: error: ...; see --help``), exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog=PROG,
        description=(
            "Official XOR-Retrieve R@kt (exact parity with eval_xor_retrieve.py), per language and macro; every "
            "system after the first is tested against the first; with --qrels also MRR@10, Recall@k, nDCG@10 "
            "and mAP@20 of the runs (trec_eval's definitions, through ir_measures)."
        ),
        epilog=(
            "examples:\n"
            "  xqg-eval --questions xor_dev_retrieve_eng_span_v1_1.jsonl --predictions preds.json.gz\n"
            "  xqg-eval --questions Q.jsonl --corpus psgs_w100.tsv --run base.tsv xqg.tsv oracle.tsv \\\n"
            "           --names xDR +xQG oracle --correction holm --latex table.tex --csv table.csv\n"
            "  xqg-eval --questions Q.jsonl --corpus corpus.jsonl --run a.tsv b.tsv --qrels dev.qrels \\\n"
            "           --per-query per_query.tsv --json out.json\n"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--questions", required=True, help="XOR-TyDi questions JSONL {id, question, answers, lang}"
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--predictions",
        nargs="+",
        help="official predictions [{id, lang, ctxs: [text, ...]}] (.json[.gz]); the first is the baseline",
    )
    src.add_argument(
        "--run",
        nargs="+",
        help="runs: Tevatron 'qid docid score' or TREC 6 columns (need --corpus); the first is the baseline",
    )
    p.add_argument("--names", nargs="+", help="a row name per system, in order (default: the file names)")
    p.add_argument("--corpus", help="corpus for --run: DPR TSV (id text title) or JSONL {docid, title, text}")
    p.add_argument("--cache-dir", help="cache for the corpus store and per-passage tokens (run mode)")
    p.add_argument("--compare", help="one more system, tested against the first (same as a second file)")
    p.add_argument(
        "--qrels", nargs="+", help="TREC qrels 'qid 0 docid rel' (runs only): adds the --measures rows"
    )
    p.add_argument(
        "--measures",
        nargs="+",
        default=list(DEFAULT_MEASURES),
        help="qrels measures (ir_measures names; MRR@k, Recall@k, mAP@k also accepted)",
    )
    p.add_argument("--json", help="write the metrics JSON here")
    p.add_argument("--latex", help="write the table as a booktabs LaTeX tabular here ('-': print it)")
    p.add_argument("--csv", help="write the table as tidy CSV rows with p-values here ('-': print it)")
    p.add_argument(
        "--per-query",
        help="write one row per system and question here: qid, lang, hit at each k, qrels measures "
        "(tab-separated; comma-separated for a .csv name; '-': print it)",
    )
    p.add_argument("--details", action="store_true", help="JSON: add missing/unknown/skipped ids")
    p.add_argument(
        "--k", type=int, nargs="+", default=list(DEFAULT_KS), help="k of R@kt, in thousands of tokens"
    )
    p.add_argument("--allow-missing", action="store_true", help="score only questions that have predictions")
    p.add_argument(
        "--allow-unknown", action="store_true", help="ignore prediction ids not in the question file"
    )
    p.add_argument("--tests", nargs="+", choices=TESTS, default=list(TESTS), help="significance tests")
    p.add_argument(
        "--correction",
        choices=CORRECTIONS,
        default="none",
        help="multiple-test correction over each comparison's languages x metrics x tests (holm: Holm-Bonferroni)",
    )
    p.add_argument("--permutations", type=int, default=10_000, help="randomisation test draws")
    p.add_argument("--seed", type=int, default=0, help="randomisation test seed")
    p.add_argument("--level", type=float, default=0.05, help="significance level for the markers")
    p.add_argument("--workers", type=int, default=0, help="tokenisation processes (0 = all cores)")
    p.add_argument("--nltk-data", help="folder holding tokenizers/punkt_tab (added to the nltk search path)")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    p.add_argument("--decimals", type=int, default=2)
    return p


def options_from_args(args: argparse.Namespace) -> ScoreOptions:
    """The scoring options the flags ask for."""
    return ScoreOptions(
        ks=tuple(args.k),
        allow_missing=args.allow_missing,
        allow_unknown=args.allow_unknown,
        nltk_data=args.nltk_data,
        cache_dir=args.cache_dir,
        workers=args.workers,
        tests=tuple(args.tests),
        permutations=args.permutations,
        seed=args.seed,
        level=args.level,
        decimals=args.decimals,
        details=args.details,
        correction=args.correction,
        measures=tuple(args.measures),
    )


def check_output(path: str | None, flag: str) -> None:
    """An output file (``--json``, ``--latex``, ...) or ``--cache-dir``: fail before scoring when it cannot be
    written."""
    if not path or path == STDOUT:
        return
    p = Path(path)
    is_file = flag != "--cache-dir"
    if is_file and p.is_dir():
        raise XqgInputError(f"{p} is a directory; give a file name", field=flag)
    folder = p.parent if is_file else p
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise XqgInputError(f"{folder} is not a folder", field=flag)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise XqgInputError(f"{folder} is not writable (read-only or no permission)", field=flag)


def delimited(rows: Sequence[Sequence[str]], delimiter: str = ",") -> str:
    """Rows as CSV (or TSV) text, quoted where a cell needs it."""
    buf = io.StringIO()
    csv.writer(buf, delimiter=delimiter, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def outputs(args: argparse.Namespace, report: ScoreReport) -> dict[str, str]:
    """argparse dest -> the text of that output, for every output flag given."""
    per_query_sep = "," if (args.per_query or "").endswith(".csv") else "\t"
    makers = {
        "json": lambda: json.dumps(report.to_json(), indent=2, sort_keys=True, ensure_ascii=False) + "\n",
        "latex": lambda: report.table(fmt="latex") + "\n",
        "csv": lambda: delimited(report.csv_rows()),
        "per_query": lambda: delimited(report.per_query_rows(), per_query_sep),
    }
    return {dest: makers[dest]() for dest in OUTPUTS if getattr(args, dest)}


def run(args: argparse.Namespace) -> int:
    systems = list(args.predictions or args.run) + ([args.compare] if args.compare else [])
    if args.run and not args.corpus:
        raise XqgInputError(
            "--run needs --corpus (the passages the run's docids point into)", field="--corpus"
        )
    if args.qrels and args.predictions:
        raise XqgInputError(
            "--qrels needs --run files (docids); predictions files hold passage texts", field="--qrels"
        )
    if args.names is not None:
        try:
            system_names(systems, args.names)
        except XqgInputError as e:
            raise XqgInputError(e.message, field="--names") from None
    printed = [OUTPUTS[d] for d in OUTPUTS if getattr(args, d) == STDOUT]
    if len(printed) > 1 or (printed and args.markdown):
        raise XqgInputError(
            f"only one table can go to stdout, got {printed + ['--markdown'] * args.markdown}"
        )
    options = options_from_args(args).check(FLAGS)
    for dest, flag in OUTPUTS.items():
        check_output(getattr(args, dest), flag)
    check_output(args.cache_dir, "--cache-dir")
    report = score_systems(
        args.questions, systems, names=args.names, corpus=args.corpus, qrels=args.qrels, options=options
    )
    texts = outputs(args, report)
    printed_dest = next((d for d in texts if getattr(args, d) == STDOUT), None)
    if printed_dest is None:
        print(report.table(fmt="markdown" if args.markdown else "text"))
    else:
        sys.stdout.write(texts[printed_dest])
    for dest, text in texts.items():
        if dest == "json" and dest != printed_dest:
            atomic_write_json(Path(args.json), report.to_json())
        elif dest != printed_dest:
            atomic_write_text(Path(getattr(args, dest)), text)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns the exit code (0 ok, 2 bad input or missing resource)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format=f"{PROG}: warning: %(message)s", stream=sys.stderr)
    try:
        return run(args)
    except (XqgInputError, MissingResourceError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        message = place_error_message(e)
        if message is None:
            raise
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
