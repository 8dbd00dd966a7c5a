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
from xqg.evaluation.result import metric_name
from xqg.evaluation.score_files import ScoreOptions, score_and_compare
from xqg.evaluation.significance import TESTS
from xqg.tasks.schema import EvaluateSettings, MetricsSettings

log = logging.getLogger("xqg.tasks.score")


def options_from_settings(metrics: MetricsSettings, cache_dir: str | None = None) -> ScoreOptions:
    """``ScoreOptions`` from the ``metrics`` settings (``conf/metrics/xor.yaml``)."""
    sig = metrics.significance
    return ScoreOptions(
        ks=tuple(int(k) for k in metrics.ks),
        allow_missing=bool(metrics.allow_missing),
        allow_unknown=bool(metrics.allow_unknown),
        nltk_data=metrics.nltk_data,
        cache_dir=cache_dir,
        token_cache_dir=metrics.token_cache_dir,
        workers=metrics.workers,
        tests=tuple(sig.tests or TESTS),
        permutations=int(sig.permutations),
        seed=int(sig.seed),
        level=float(sig.level),
        decimals=int(metrics.decimals),
        details=bool(metrics.details),
    )


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
    report = score_and_compare(s.questions, system, other=s.compare, corpus=s.corpus, options=o)
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
