"""Score files as a user hands them over: predictions files or runs (+ corpus), the first the baseline and every
other one tested against it (paired tests, per language and macro, optionally Holm-corrected), and, where qrels
exist, the trec_eval measures of the runs (:mod:`xqg.evaluation.qrels_measures`) tested the same way; into one
report (results, comparisons, tables in text/Markdown/LaTeX, CSV, per-question rows, JSON).

The one implementation behind ``xqg-eval`` (:mod:`xqg.tasks.eval_cli`, from argv) and ``evaluate.py
score.*=...`` (:mod:`xqg.tasks.score`, from the Hydra config): both only build a :class:`ScoreOptions`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from xqg.core.errors import XqgInputError
from xqg.core.io import open_binary
from xqg.data.corpus import CorpusStore, open_corpus
from xqg.data.formats.qrels import Qrels, read_qrels
from xqg.data.formats.runs import read_run
from xqg.data.records import Question
from xqg.evaluation.gold_measures import compare_measures
from xqg.evaluation.qrels_measures import DEFAULT_MEASURES, canonical_name, qrels_measures
from xqg.evaluation.result import EvalResult, lang_order, metric_name
from xqg.evaluation.scoring import Ranked, evaluate_predictions, score_run
from xqg.evaluation.significance import CORRECTIONS, MACRO, TESTS, Comparison, compare, correct
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
    correction: str = "none"  # multiple-test correction of each comparison: "none" or "holm"
    measures: tuple[str, ...] = DEFAULT_MEASURES  # qrels measures (only where qrels are given)

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
        if self.correction not in CORRECTIONS:
            out.append(("correction", f"must be one of {list(CORRECTIONS)}, got {self.correction!r}"))
        try:
            names = [canonical_name(m) for m in self.measures]
        except XqgInputError as e:
            out.append(("measures", e.message))
        else:
            if len(set(names)) != len(names):
                out.append(("measures", f"must be distinct, got {list(self.measures)!r}"))
        return out


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


@dataclass
class ScoreReport:
    """Results per system (first = the baseline) and, for every other system, its paired tests against the first
    (R@kt and, with qrels, the qrels measures: one family for the correction)."""

    results: dict[str, EvalResult]
    comparisons: dict[str, Comparison] = field(default_factory=dict)  # other system's name -> its tests
    options: ScoreOptions = field(default_factory=ScoreOptions)

    @property
    def comparison(self) -> Comparison | None:
        """The second system's tests (None for one system)."""
        return next(iter(self.comparisons.values()), None)

    def table(self, fmt: str = "text") -> str:
        """The paper's table (``text``, ``markdown`` or ``latex``), with significance markers and footnotes, and
        each system's notes under it."""
        markers = {name: comp.marker_map() for name, comp in self.comparisons.items()}
        notes: list[str] = []
        first = self.comparison
        if first is not None:
            notes += significance_footnotes(
                first.level, first.name_a, list(self.options.tests), first.correction, first.family
            )
            for comp in self.comparisons.values():
                prefix = f"{comp.name_b}: " if len(self.comparisons) > 1 else ""
                notes += [prefix + n for n in comp.notes]
        for name, res in self.results.items():
            notes += [f"{name}: {n}" for n in res.notes()]
        systems = {name: r.to_json() for name, r in self.results.items()}
        return paper_table(systems, markers=markers, fmt=fmt, decimals=self.options.decimals, footnotes=notes)

    def to_json(self, details: bool | None = None) -> dict[str, Any]:
        """The first system's metrics JSON; with a second system also ``compare`` (its metrics) and
        ``significance`` (its tests); with more, ``systems``: every system after the first, in order, each
        ``{name, ...metrics, significance}``. ``details`` defaults to the options'."""
        d = self.options.details if details is None else details
        names = list(self.results)
        out = self.results[names[0]].to_json(details=d)
        comp = self.comparison
        if comp is not None and len(names) > 1:
            out["compare"] = {"name": names[1], **self.results[names[1]].to_json(details=d)}
            out["significance"] = comp.to_json()
        if len(names) > 2:
            out["systems"] = [
                {
                    "name": n,
                    **self.results[n].to_json(details=d),
                    "significance": self.comparisons[n].to_json(),
                }
                for n in names[1:]
            ]
        return out

    def metric_names(self) -> list[str]:
        """R@kt by k, then the qrels measures in the order asked for."""
        first = next(iter(self.results.values()))
        return [metric_name(k) for k in first.ks] + list(first.measures)

    def csv_rows(self) -> list[list[str]]:
        """The table as tidy rows: ``system, metric, language (or macro), value`` (percent, as in the table),
        ``questions, markers`` and the p-value of each test against the first system (Holm-adjusted too, with a
        correction); header first."""
        tests = list(self.options.tests)
        adjusted = self.comparison is not None and self.comparison.correction != "none"
        header = ["system", "metric", "language", "value", "questions", "markers"]
        header += [f"p_{t}" for t in tests] + ([f"p_{t}_adjusted" for t in tests] if adjusted else [])
        rows = [header]
        for name, res in self.results.items():
            block_of = res.to_json()
            comp = self.comparisons.get(name)
            for metric in self.metric_names():
                block = block_of.get(metric)
                if block is None:
                    continue
                for lang in [*lang_order(block["count"]), MACRO]:
                    count = block["count"].get(lang) if lang != MACRO else sum(block["count"].values())
                    cells = [name, metric, lang, repr(float(block[lang])), str(count)]
                    per = comp.tests.get(metric, {}).get(lang, {}) if comp is not None else {}
                    cells.append(comp.markers(metric, lang) if comp is not None else "")
                    cells += [repr(per[t].p_value) if t in per else "" for t in tests]
                    if adjusted:
                        cells += [repr(comp.marker_p(metric, lang, t)) if t in per else "" for t in tests]
                    rows.append(cells)
        return rows

    def per_query_rows(self) -> list[list[str]]:
        """One row per (system, question): ``system, qid, lang``, the 0/1 hit at each k (``R@2kt`` ...), then each
        qrels measure's value in [0, 1] (empty where the question has no qrels); header first."""
        metrics = self.metric_names()
        rows = [["system", "qid", "lang", *metrics]]
        for name, res in self.results.items():
            for qid, lang in res.question_lang.items():
                cells = [name, qid, lang]
                cells += [str(int(res.hits[k][qid])) for k in res.ks]
                cells += [
                    repr(res.measures[m][qid]) if qid in res.measures.get(m, {}) else ""
                    for m in metrics[len(res.ks) :]
                ]
                rows.append(cells)
        return rows


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
    """The options' paired tests of ``b`` against ``a``, per language and macro: R@kt and the measures both carry
    (qrels/gold measures), corrected together as one family when the options ask for a correction."""
    o = options
    tests = dict(
        tests=o.tests, permutations=o.permutations, seed=o.seed, level=o.level, name_a=name_a, name_b=name_b
    )
    comp = compare(a, b, **tests)
    measured = compare_measures(a, b, **tests)
    if measured is not None:
        comp.tests.update(measured.tests)
        comp.notes += [n for n in measured.notes if n not in comp.notes]
    correct(comp, o.correction)
    return comp


def score_file(
    path: str | Path,
    questions: str | Path,
    *,
    corpus: str | Path | CorpusStore | None = None,
    options: ScoreOptions | None = None,
    qrels: Qrels | None = None,
) -> EvalResult:
    """Score one predictions file or run (detected from its content); with ``qrels`` (a run only: they name
    docids) also the options' qrels measures of the questions it counted (``EvalResult.measures``)."""
    o = options or ScoreOptions()
    if input_kind(path) == "predictions":
        if qrels is not None:
            raise XqgInputError(
                "qrels measures need a run (docids); a predictions file holds passage texts", path=path
            )
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
    if qrels is None:
        return score_ranked(questions, path, corpus, o)
    run = read_run(path)
    result = score_ranked(questions, run, corpus, o)
    result.sources["run"] = str(path)
    scores = qrels_measures(run, qrels, o.measures, qids=result.question_lang)
    return replace(result, measures={**result.measures, **scores.per_query})


def system_names(systems: Sequence[str | Path], names: Sequence[str] | None = None) -> list[str]:
    """Row labels: ``names`` as given (one per system, distinct), else the file names (numbered when two
    clash)."""
    if names is not None:
        names = [str(n) for n in names]
        if len(names) != len(systems):
            raise XqgInputError(f"{len(names)} names for {len(systems)} systems", field="names")
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup or not all(n.strip() for n in names):
            raise XqgInputError(f"names must be distinct and non-empty, got {names!r}", field="names")
        return names
    auto = [system_name(x) for x in systems]
    return [f"{n} ({i + 1})" if auto.count(n) > 1 else n for i, n in enumerate(auto)]


def score_systems(
    questions: str | Path,
    systems: Sequence[str | Path],
    *,
    names: Sequence[str] | None = None,
    corpus: str | Path | Sequence[str | Path] | None = None,
    qrels: str | Path | Sequence[str | Path] | Qrels | None = None,
    options: ScoreOptions | None = None,
) -> ScoreReport:
    """Score every system (predictions files or runs); each after the first is tested against the first. With
    ``qrels`` (files or a mapping), the runs also get the options' qrels measures, tested and corrected in the same
    family as R@kt. Every input is checked (kinds, corpus, names, qrels) before the first is scored."""
    o = (options or ScoreOptions()).check()
    if not systems:
        raise XqgInputError("no system to score", field="systems")
    labels = system_names(systems, names)
    kinds = [
        input_kind(x, "predictions/run file" if i == 0 else "compare file") for i, x in enumerate(systems)
    ]
    for path, kind in zip(systems, kinds, strict=True):
        if kind == "run" and corpus is None:
            raise XqgInputError(
                "this is a run file: scoring it needs the corpus (--corpus / score.corpus)", path=path
            )
        if kind == "predictions" and qrels is not None:
            raise XqgInputError(
                "qrels measures need runs (docids); a predictions file holds passage texts", path=path
            )
    gold = (
        (read_qrels(qrels) if isinstance(qrels, str | Path | list | tuple) else dict(qrels))
        if qrels
        else None
    )
    if qrels is not None and not gold:
        raise XqgInputError("the qrels hold no relevant passage (relevance > 0)", field="qrels")
    store = open_corpus(corpus, o.cache_dir) if corpus is not None else None
    results = {
        label: score_file(path, questions, corpus=store, options=o, qrels=gold)
        for label, path in zip(labels, systems, strict=True)
    }
    base = labels[0]
    comparisons = {
        label: compare_results(results[base], results[label], o, base, label) for label in labels[1:]
    }
    return ScoreReport(results, comparisons, o)


def score_and_compare(
    questions: str | Path,
    system: str | Path,
    *,
    other: str | Path | None = None,
    corpus: str | Path | Sequence[str | Path] | None = None,
    options: ScoreOptions | None = None,
) -> ScoreReport:
    """Score ``system`` (and ``other``); with ``other``, paired tests of ``other`` against ``system``."""
    return score_systems(
        questions, [system] if other is None else [system, other], corpus=corpus, options=options
    )
