"""Score files as a user hands them over: a predictions file or a run (+ corpus), optionally against a second
system with paired significance tests, into one report (results, comparison, table, JSON).

The one implementation behind ``xqg-eval`` (:mod:`xqg.tasks.eval_cli`, from argv) and ``evaluate.py
score.*=...`` (:mod:`xqg.tasks.score`, from the Hydra config): both only build a :class:`ScoreOptions`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xqg.core.errors import XqgInputError
from xqg.core.io import open_binary
from xqg.data.corpus import CorpusStore, open_corpus
from xqg.data.records import Question
from xqg.evaluation.result import EvalResult
from xqg.evaluation.scoring import Ranked, evaluate_predictions, score_run
from xqg.evaluation.significance import TESTS, Comparison, compare
from xqg.evaluation.tables import paper_table, significance_footnotes
from xqg.evaluation.xor_rule import DEFAULT_KS

_NAME_SUFFIXES = (".gz", ".json", ".jsonl", ".tsv", ".txt", ".trec", ".run", ".tevatron")


def input_kind(path: str | Path, what: str = "predictions/run file") -> str:
    """``predictions`` (a JSON array / JSONL of ``{id, lang, ctxs}``) or ``run`` (Tevatron/TREC lines), from the
    first bytes of the (maybe gzipped) content; an empty file is neither (one error naming it)."""
    try:
        with open_binary(path, what=what) as f:
            head = f.read(4096)
            while head and not head.strip() and len(head) < (1 << 20):
                more = f.read(4096)
                if not more:
                    break
                head += more
    except (OSError, EOFError) as e:
        raise XqgInputError(f"cannot read ({e})", path=path) from None
    first = head.lstrip()[:1]
    if not first:
        raise XqgInputError(
            f"empty {what}: expected predictions (JSON [{{id, lang, ctxs}}] or JSONL) or a run "
            "(Tevatron/TREC lines)",
            path=path,
        )
    return "predictions" if first in (b"[", b"{") else "run"


def system_name(path: str | Path) -> str:
    """A short label for a table row: the file name without its data suffixes."""
    name = Path(path).name
    for suffix in _NAME_SUFFIXES:
        name = name.removesuffix(suffix)
    return name or str(path)


@dataclass
class ScoreOptions:
    """Everything scoring needs beyond the files (the ``metrics`` config group, or ``xqg-eval``'s flags).

    ``level`` is the significance level of the table's markers; ``details`` adds missing/unknown/skipped ids to
    the JSON."""

    ks: tuple[int, ...] = DEFAULT_KS
    allow_missing: bool = False
    allow_unknown: bool = False
    nltk_data: str | None = None
    cache_dir: str | None = None
    token_cache_dir: str | None = None
    workers: int | None = None
    tests: tuple[str, ...] = TESTS
    permutations: int = 10_000
    seed: int = 0
    level: float = 0.05
    decimals: int = 2
    details: bool = False

    def check(self, names: Mapping[str, str] | None = None) -> ScoreOptions:
        """Raise one :class:`XqgInputError` for the first value out of range, naming it as the front spells it
        (``names``: option -> ``--flag`` or config key), before any file is read; returns ``self``."""
        names = names or {}
        for option, message in self.problems():
            raise XqgInputError(message, field=names.get(option, option))
        return self

    def problems(self) -> list[tuple[str, str]]:
        """(option, what is wrong) for every value out of range (empty when all are valid)."""
        out: list[tuple[str, str]] = []
        ks = list(self.ks)
        if not ks or not all(_is_int(k) and k > 0 for k in ks):
            out.append(("ks", f"must be positive integers (thousands of tokens), got {ks!r}"))
        if not _is_int(self.permutations) or self.permutations < 1:
            out.append(("permutations", f"must be an integer >= 1, got {self.permutations!r}"))
        if not _is_int(self.seed) or not 0 <= self.seed < 2**32:
            out.append(("seed", f"must be an integer in [0, 2**32), got {self.seed!r}"))
        if isinstance(self.level, bool) or not isinstance(self.level, int | float) or not 0 < self.level < 1:
            out.append(("level", f"must be a significance level in (0, 1), got {self.level!r}"))
        if not _is_int(self.decimals) or not 0 <= self.decimals <= 10:
            out.append(("decimals", f"must be an integer in 0..10, got {self.decimals!r}"))
        if self.workers is not None and (not _is_int(self.workers) or self.workers < 0):
            out.append(("workers", f"must be 0 (all cores) or a positive integer, got {self.workers!r}"))
        tests = list(self.tests)
        bad = [t for t in tests if t not in TESTS]
        if bad or len(set(tests)) != len(tests):
            out.append(("tests", f"must be distinct names from {list(TESTS)}, got {tests!r}"))
        return out


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


@dataclass
class ScoreReport:
    """Results per system (first = baseline) and, with two systems, the paired tests of the second."""

    results: dict[str, EvalResult]
    comparison: Comparison | None = None
    options: ScoreOptions = field(default_factory=ScoreOptions)

    def table(self, fmt: str = "text") -> str:
        """The paper's table, with significance markers and footnotes, and each system's notes under it."""
        markers = {}
        notes: list[str] = []
        if self.comparison is not None:
            markers[self.comparison.name_b] = self.comparison.marker_map()
            notes += significance_footnotes(
                self.comparison.level, self.comparison.name_a, list(self.options.tests)
            )
            notes += self.comparison.notes
        for name, res in self.results.items():
            notes += [f"{name}: {n}" for n in res.notes()]
        systems = {name: r.to_json() for name, r in self.results.items()}
        return paper_table(systems, markers=markers, fmt=fmt, decimals=self.options.decimals, footnotes=notes)

    def to_json(self, details: bool | None = None) -> dict[str, Any]:
        """The first system's metrics JSON; with a comparison also ``compare`` (the second's) and
        ``significance``. ``details`` defaults to the options'."""
        d = self.options.details if details is None else details
        names = list(self.results)
        out = self.results[names[0]].to_json(details=d)
        if self.comparison is not None and len(names) > 1:
            out["compare"] = {"name": names[1], **self.results[names[1]].to_json(details=d)}
            out["significance"] = self.comparison.to_json()
        return out


def score_ranked(
    questions: str | Path | Sequence[Question],
    run: str | Path | Mapping[str, Ranked],
    corpus: str | Path | CorpusStore,
    options: ScoreOptions,
) -> EvalResult:
    """Score a run (a file, or ranked passages in memory) over a corpus with the options' settings."""
    o = options
    return score_run(
        questions,
        run,
        corpus,
        o.ks,
        cache_dir=o.cache_dir,
        allow_missing=o.allow_missing,
        allow_unknown=o.allow_unknown,
        token_cache_dir=o.token_cache_dir,
        workers=o.workers,
        nltk_data=o.nltk_data,
    )


def compare_results(
    a: EvalResult, b: EvalResult, options: ScoreOptions, name_a: str = "A", name_b: str = "B"
) -> Comparison:
    """The options' paired tests of ``b`` against ``a``, per language and macro."""
    o = options
    return compare(
        a,
        b,
        tests=o.tests,
        permutations=o.permutations,
        seed=o.seed,
        level=o.level,
        name_a=name_a,
        name_b=name_b,
    )


def score_file(
    path: str | Path,
    questions: str | Path,
    *,
    corpus: str | Path | CorpusStore | None = None,
    options: ScoreOptions | None = None,
) -> EvalResult:
    """Score one predictions file or run (detected from its content)."""
    o = options or ScoreOptions()
    if input_kind(path) == "predictions":
        return evaluate_predictions(
            questions,
            path,
            ks=o.ks,
            allow_missing=o.allow_missing,
            allow_unknown=o.allow_unknown,
            workers=o.workers,
            nltk_data=o.nltk_data,
        )
    if corpus is None:
        raise XqgInputError(
            "this is a run file: scoring it needs the corpus (--corpus / score.corpus)", path=path
        )
    return score_ranked(questions, path, corpus, o)


def score_and_compare(
    questions: str | Path,
    system: str | Path,
    *,
    other: str | Path | None = None,
    corpus: str | Path | Sequence[str | Path] | None = None,
    options: ScoreOptions | None = None,
) -> ScoreReport:
    """Score ``system`` (and ``other``); with ``other``, paired tests of ``other`` against ``system``."""
    o = (options or ScoreOptions()).check()
    kinds = [input_kind(system)] + ([input_kind(other, "compare file")] if other is not None else [])
    if "run" in kinds and corpus is None:
        bad = system if kinds[0] == "run" else other
        raise XqgInputError(
            "this is a run file: scoring it needs the corpus (--corpus / score.corpus)", path=bad
        )
    store = open_corpus(corpus, o.cache_dir) if corpus is not None else None
    name_a = system_name(system)
    results = {name_a: score_file(system, questions, corpus=store, options=o)}
    comparison = None
    if other is not None:
        name_b = system_name(other)
        if name_b == name_a:
            name_a, name_b = f"{name_a} (A)", f"{name_b} (B)"
            results = {name_a: results.pop(next(iter(results)))}
        results[name_b] = score_file(other, questions, corpus=store, options=o)
        comparison = compare_results(results[name_a], results[name_b], o, name_a, name_b)
    return ScoreReport(results, comparison, o)
