"""``xqg-eval``: score XOR-Retrieve predictions or a run with the official R@kt, per language, with paired
significance tests against a second system. The argparse front of :mod:`xqg.evaluation.score_files` (flags ->
``ScoreOptions``). Bad input (a flag, a file, an unwritable ``--json`` or cache) gives one line on stderr and exit
code 2, checked before any file is scored."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from xqg.core.artifacts import atomic_write_json
from xqg.core.errors import MissingResourceError, XqgInputError, place_error_message
from xqg.evaluation.score_files import ScoreOptions, score_and_compare
from xqg.evaluation.significance import TESTS
from xqg.evaluation.xor_rule import DEFAULT_KS

PROG = "xqg-eval"
#: ScoreOptions field -> the flag that sets it (errors name the flag).
FLAGS = {
    "ks": "--k",
    "permutations": "--permutations",
    "seed": "--seed",
    "level": "--level",
    "decimals": "--decimals",
    "workers": "--workers",
    "tests": "--tests",
}


class _Parser(argparse.ArgumentParser):
    """argparse with its usage errors as one line (``xqg-eval: error: ...; see --help``), exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog=PROG,
        description="Official XOR-Retrieve R@kt (exact parity with eval_xor_retrieve.py), per language and macro.",
        epilog=(
            "examples:\n"
            "  xqg-eval --questions xor_dev_retrieve_eng_span_v1_1.jsonl --predictions preds.json.gz\n"
            "  xqg-eval --questions Q.jsonl --run run.tsv --corpus psgs_w100.tsv --compare run_xqg.tsv\n"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--questions", required=True, help="XOR-TyDi questions JSONL {id, question, answers, lang}"
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--predictions", help="official predictions [{id, lang, ctxs: [text, ...]}] (.json[.gz])"
    )
    src.add_argument("--run", help="run file: Tevatron 'qid docid score' or TREC 6 columns (needs --corpus)")
    p.add_argument("--corpus", help="corpus for --run: DPR TSV (id text title) or JSONL {docid, title, text}")
    p.add_argument("--cache-dir", help="cache for the corpus store and per-passage tokens (run mode)")
    p.add_argument("--compare", help="a second predictions file or run: paired significance tests against it")
    p.add_argument("--json", help="write the metrics JSON here")
    p.add_argument("--details", action="store_true", help="JSON: add missing/unknown/skipped ids")
    p.add_argument(
        "--k", type=int, nargs="+", default=list(DEFAULT_KS), help="k of R@kt, in thousands of tokens"
    )
    p.add_argument("--allow-missing", action="store_true", help="score only questions that have predictions")
    p.add_argument(
        "--allow-unknown", action="store_true", help="ignore prediction ids not in the question file"
    )
    p.add_argument("--tests", nargs="+", choices=TESTS, default=list(TESTS), help="significance tests")
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
    )


def check_output(path: str | None, flag: str) -> None:
    """``--json``/``--cache-dir``-style destinations: fail before scoring when they cannot be written."""
    if not path:
        return
    p = Path(path)
    if flag == "--json" and p.is_dir():
        raise XqgInputError(f"{p} is a directory; give a file name for the metrics JSON", field=flag)
    folder = p.parent if flag == "--json" else p
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise XqgInputError(f"{folder} is not a folder", field=flag)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise XqgInputError(f"{folder} is not writable (read-only or no permission)", field=flag)


def run(args: argparse.Namespace) -> int:
    if args.run and not args.corpus:
        raise XqgInputError(
            "--run needs --corpus (the passages the run's docids point into)", field="--corpus"
        )
    options = options_from_args(args).check(FLAGS)
    check_output(args.json, "--json")
    check_output(args.cache_dir, "--cache-dir")
    report = score_and_compare(
        args.questions,
        args.predictions or args.run,
        other=args.compare,
        corpus=args.corpus,
        options=options,
    )
    print(report.table(fmt="markdown" if args.markdown else "text"))
    if args.json:
        atomic_write_json(Path(args.json), report.to_json())
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
