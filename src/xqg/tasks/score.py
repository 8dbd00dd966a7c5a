"""``evaluate.py score.questions=Q score.predictions=P`` (or ``score.run=R score.corpus=C``, optionally
``score.compare=P2``): the Hydra front of :mod:`xqg.evaluation.score_files` (``xqg-eval`` is the argparse one).
It only turns the typed ``metrics`` settings into :class:`ScoreOptions`, prints the table and writes
``results.json``."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from xqg.core.artifacts import atomic_write_json
from xqg.core.errors import XqgInputError
from xqg.data.sources import resolve_source, resolve_sources
from xqg.evaluation.result import metric_name
from xqg.evaluation.score_files import ScoreOptions, score_and_compare
from xqg.tasks.config_checks import METRICS_KEYS
from xqg.tasks.schema import EvaluateSettings, MetricsSettings

log = logging.getLogger("xqg.tasks.score")


def options_from_settings(metrics: MetricsSettings, cache_dir: str | None = None) -> ScoreOptions:
    """``ScoreOptions`` from the ``metrics`` settings (``conf/metrics/xor.yaml``), checked (the keys named)."""
    return metrics.score_options(cache_dir).check(METRICS_KEYS)


def objective_metric(metrics: MetricsSettings, ks: Sequence[int]) -> str:
    return str(metrics.objective or metric_name(ks[0]))


def run(settings: EvaluateSettings) -> float:
    """Score the files named in ``settings.score``: print the table, write ``results.json`` into the run folder,
    return the objective (macro of ``metrics.objective``, default the first k's R@kt)."""
    s = settings.score
    o = options_from_settings(settings.metrics, settings.paths.cache_dir or None)
    if not s.questions:
        raise XqgInputError("score.questions is required (XOR-TyDi questions JSONL)", field="score.questions")
    if s.predictions and s.run:
        raise XqgInputError("give score.predictions or score.run, not both", field="score.run")
    system = s.predictions or s.run
    if not system:
        raise XqgInputError(
            "give score.predictions or score.run (the system to score)", field="score.predictions"
        )
    # Each file may be remote (a URL, hf://...@rev/...) or, for the corpus, several files (a glob, the released
    # shards): fetched into the cache first, the same as the pipeline's data.
    cache = settings.paths.cache_dir or "cache"

    def local(spec: str, what: str) -> str:
        return str(resolve_source(spec, cache, what=what))

    corpus = resolve_sources(s.corpus, cache, what="score.corpus") if s.corpus else None
    report = score_and_compare(
        local(s.questions, "score.questions"),
        local(system, "score.predictions" if s.predictions else "score.run"),
        other=local(s.compare, "score.compare") if s.compare else None,
        corpus=corpus[0] if corpus and len(corpus) == 1 else corpus,
        options=o,
    )
    print(report.table())
    if settings.paths.output_dir:
        path = Path(settings.paths.output_dir) / "results.json"
        atomic_write_json(path, report.to_json())
        log.info("wrote %s", path)
    metric = objective_metric(settings.metrics, o.ks)
    first = next(iter(report.results.values())).to_json()
    if metric not in first:
        raise XqgInputError(
            f"objective {metric!r} is not among the computed metrics {list(first)}", field="metrics.objective"
        )
    return float(first[metric]["macro"])
