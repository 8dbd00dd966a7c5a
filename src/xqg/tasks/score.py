"""Score files as a user hands them over: a predictions file or a run (+ corpus), optionally against a second
system with paired significance tests. Shared by ``xqg-eval`` and ``evaluate.py score.*=...``."""

from __future__ import annotations

import gzip
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xqg.core.errors import XqgInputError
from xqg.evaluation.metrics import DEFAULT_KS, EvalResult, evaluate_predictions, metric_name, score_run
from xqg.evaluation.significance import TESTS, Comparison, compare

log = logging.getLogger("xqg.tasks.score")


def input_kind(path: str | Path) -> str:
    """``predictions`` (a JSON array / JSONL of ``{id, lang, ctxs}``) or ``run`` (Tevatron/TREC lines)."""
    p = Path(path)
    if not p.is_file():
        raise XqgInputError("file not found", path=p)
    with open(p, "rb") as f:
        head = f.read(2)
    try:
        if head == b"\x1f\x8b":
            with gzip.open(p, "rb") as g:
                head = g.read(4096)
        else:
            with open(p, "rb") as f:
                head = f.read(4096)
    except (OSError, EOFError) as e:
        raise XqgInputError(f"cannot read ({e})", path=p) from None
    first = head.lstrip()[:1]
    return "predictions" if first in (b"[", b"{") else "run"


def system_name(path: str | Path) -> str:
    """A short label for a table row: the file name without its data suffixes."""
    name = Path(path).name
    for suffix in (".gz", ".json", ".jsonl", ".tsv", ".txt", ".trec", ".run", ".tevatron"):
        name = name.removesuffix(suffix)
    return name or str(path)


@dataclass
class ScoreOptions:
    """Everything scoring needs beyond the files (the ``metrics`` config group, or CLI flags)."""

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
    alpha: float = 0.05
    decimals: int = 2


@dataclass
class ScoreReport:
    """Results per system (first = baseline) and, with two systems, the paired tests of the second."""

    results: dict[str, EvalResult]
    comparison: Comparison | None = None
    options: ScoreOptions = field(default_factory=ScoreOptions)

    def table(self, fmt: str = "text") -> str:
        from xqg.evaluation.report import paper_table, significance_footnotes

        markers = {}
        notes: list[str] = []
        if self.comparison is not None:
            markers[self.comparison.name_b] = self.comparison.marker_map()
            notes += significance_footnotes(
                self.comparison.alpha, self.comparison.name_a, list(self.options.tests)
            )
            notes += self.comparison.notes
        for name, res in self.results.items():
            notes += [f"{name}: {n}" for n in res.notes()]
        systems = {name: r.to_json() for name, r in self.results.items()}
        return paper_table(systems, markers=markers, fmt=fmt, decimals=self.options.decimals, footnotes=notes)

    def to_json(self, details: bool = False) -> dict[str, Any]:
        """The first system's metrics JSON; with a comparison also ``compare`` (the second's) and
        ``significance``."""
        names = list(self.results)
        out = self.results[names[0]].to_json(details=details)
        if self.comparison is not None and len(names) > 1:
            out["compare"] = {"name": names[1], **self.results[names[1]].to_json(details=details)}
            out["significance"] = self.comparison.to_json()
        return out


def score_file(
    path: str | Path, questions: str | Path, *, corpus: Any = None, options: ScoreOptions | None = None
) -> EvalResult:
    """Score one predictions file or run (detected from its content)."""
    o = options or ScoreOptions()
    common = {
        "ks": o.ks,
        "allow_missing": o.allow_missing,
        "allow_unknown": o.allow_unknown,
        "workers": o.workers,
        "nltk_data": o.nltk_data,
    }
    if input_kind(path) == "predictions":
        return evaluate_predictions(questions, path, **common)
    if corpus is None:
        raise XqgInputError(
            "this is a run file: scoring it needs the corpus (--corpus / score.corpus)", path=path
        )
    return score_run(
        questions, path, corpus, cache_dir=o.cache_dir, token_cache_dir=o.token_cache_dir, **common
    )


def score_and_compare(
    questions: str | Path,
    system: str | Path,
    *,
    other: str | Path | None = None,
    corpus: str | Path | None = None,
    options: ScoreOptions | None = None,
) -> ScoreReport:
    """Score ``system`` (and ``other``); with ``other``, paired tests of ``other`` against ``system``."""
    o = options or ScoreOptions()
    store = None
    if corpus is not None:
        from xqg.data.corpus import open_corpus

        store = open_corpus(corpus, o.cache_dir)
    name_a = system_name(system)
    results = {name_a: score_file(system, questions, corpus=store, options=o)}
    comparison = None
    if other is not None:
        name_b = system_name(other)
        if name_b == name_a:
            name_a, name_b = f"{name_a} (A)", f"{name_b} (B)"
            results = {name_a: results.pop(next(iter(results)))}
        results[name_b] = score_file(other, questions, corpus=store, options=o)
        comparison = compare(
            results[name_a],
            results[name_b],
            tests=o.tests,
            permutations=o.permutations,
            seed=o.seed,
            alpha=o.alpha,
            name_a=name_a,
            name_b=name_b,
        )
    return ScoreReport(results, comparison, o)


def options_from_config(metrics_cfg: Any) -> ScoreOptions:
    """``ScoreOptions`` from the ``metrics`` config group (``conf/metrics/xor.yaml``)."""
    m = metrics_cfg
    sig = m.get("significance") or {}
    tests: Sequence[str] = sig.get("tests") or TESTS
    return ScoreOptions(
        ks=tuple(int(k) for k in m.get("ks", DEFAULT_KS)),
        allow_missing=bool(m.get("allow_missing", False)),
        allow_unknown=bool(m.get("allow_unknown", False)),
        nltk_data=m.get("nltk_data"),
        token_cache_dir=m.get("token_cache_dir"),
        workers=m.get("workers"),
        tests=tuple(tests),
        permutations=int(sig.get("permutations", 10_000)),
        seed=int(sig.get("seed", 0)),
        alpha=float(sig.get("alpha", 0.05)),
        decimals=int(m.get("decimals", 2)),
    )


def objective_metric(metrics_cfg: Any, ks: Sequence[int]) -> str:
    return str(metrics_cfg.get("objective") or metric_name(ks[0]))


def score_from_config(cfg: Any) -> float:
    """``evaluate.py score.questions=Q score.predictions=P`` (or ``score.run=R score.corpus=C``), optionally
    ``score.compare=P2``: print the table, write ``results.json`` into the run folder, return the objective
    (macro of ``metrics.objective``, default the first k's R@kt)."""
    from xqg.core.artifacts import atomic_write_json

    s = cfg.score
    o = options_from_config(cfg.metrics)
    if cfg.paths.get("cache_dir"):
        o.cache_dir = str(cfg.paths.cache_dir)
    if not s.get("questions"):
        raise XqgInputError("score.questions is required (XOR-TyDi questions JSONL)", field="score.questions")
    system = s.get("predictions") or s.get("run")
    if s.get("predictions") and s.get("run"):
        raise XqgInputError("give score.predictions or score.run, not both", field="score.run")
    report = score_and_compare(s.questions, system, other=s.get("compare"), corpus=s.get("corpus"), options=o)
    print(report.table())
    out_dir = cfg.paths.get("output_dir")
    if out_dir:
        path = Path(out_dir) / "results.json"
        atomic_write_json(path, report.to_json(details=bool(cfg.metrics.get("details", False))))
        log.info("wrote %s", path)
    metric = objective_metric(cfg.metrics, o.ks)
    first = next(iter(report.results.values())).to_json()
    if metric not in first:
        raise XqgInputError(
            f"objective {metric!r} is not among the computed metrics {list(first)}", field="metrics.objective"
        )
    return float(first[metric]["macro"])
