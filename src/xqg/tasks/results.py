"""What an ``evaluate.py`` run reports: the paper's table on the console (headed by the trial and its setting in a
sweep, so tables of parallel trials can be told apart), ``results.json`` and ``trial.json`` in the run folder, and
the metrics, the baseline and the p-values in W&B (the run's id goes into ``trial.json``, then onto the trial)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

from xqg.core.artifacts import atomic_write_json
from xqg.evaluation.result import EvalResult
from xqg.evaluation.significance import Comparison
from xqg.evaluation.tables import paper_table, significance_footnotes
from xqg.tasks.console import log_to_files
from xqg.tasks.schema import EvaluateSettings
from xqg.tasks.sweep import objective_value, write_trial_record
from xqg.tasks.tracking import experiment_name, run_name, start_run
from xqg.tasks.trial_attrs import job_trial_number

log = logging.getLogger(__name__)
BASELINE, XQG = "xDR", "+xQG"
ORACLE = "+xQG oracle"  # generator=oracle: held-out real questions, not a generator's


def xqg_name(settings: EvaluateSettings) -> str:
    """The fused system's row name: says "oracle queries" when they were not generated."""
    return ORACLE if settings.generator.oracle else XQG


def results_table(
    settings: EvaluateSettings,
    result: EvalResult,
    baseline: EvalResult | None = None,
    comparison: Comparison | None = None,
) -> str:
    """The paper's table: the system alone, or baseline and +xQG rows with significance markers."""
    decimals = settings.metrics.decimals
    if comparison is None or baseline is None:
        return paper_table({settings.retrieval.name: result.to_json()}, decimals=decimals)
    return paper_table(
        {BASELINE: baseline.to_json(), xqg_name(settings): result.to_json()},
        markers={xqg_name(settings): comparison.marker_map()},
        decimals=decimals,
        footnotes=significance_footnotes(
            comparison.level,
            BASELINE,
            list(settings.metrics.significance.tests),
            comparison.correction,
            comparison.family,
        ),
    )


def trial_label(settings: EvaluateSettings) -> str | None:
    """``demo trial 3 (alpha=0.01, n=5, tune questions)`` for a job of a sweep: its experiment (two sweeps may
    print to one console: ``make -j2 demo``) and its Optuna trial number, else Hydra's job number; None for a
    single run."""
    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    if hc.mode != RunMode.MULTIRUN:
        return None
    sweeper = hc.get("sweeper") or {}
    number = job_trial_number(sweeper.get("storage"), sweeper.get("study_name"), list(hc.overrides.task))
    who = f"trial {number}" if number is not None else f"job {hc.job.num}"
    aug = settings.augmentation
    setting = f"alpha={aug.alpha:g}, n={aug.n}" if aug.enabled else "alpha=0, xQG off"
    split = f", {aug.tune_split} questions" if aug.tune_split else ""
    return f"{experiment_name()} {who} ({setting}{split})"


def _markers_json(comparison: Comparison | None) -> dict[str, dict[str, str]] | None:
    if comparison is None:
        return None
    out: dict[str, dict[str, str]] = {}
    for (metric, lang), mark in comparison.marker_map().items():
        out.setdefault(metric, {})[lang] = mark
    return out


def report(
    settings: EvaluateSettings,
    result: EvalResult,
    out_dir: Path,
    *,
    questions: int,
    checkpoint: str,
    artifacts: Mapping[str, str],
    extra: Mapping[str, Any],
    baseline: EvalResult | None = None,
    comparison: Comparison | None = None,
) -> dict[str, Any]:
    """Print the per-language table, write ``results.json`` and ``trial.json`` into the run folder, and log the
    metrics, the baseline and the p-values to W&B; returns the summary (with the objective)."""
    metrics = result.to_json()
    base = baseline.to_json() if comparison is not None and baseline is not None else None
    label = trial_label(settings)
    text = "\n".join(
        [
            *([f"{label}:"] if label else []),
            results_table(settings, result, baseline, comparison),
            *result.notes(),
        ]
    )
    print(text, flush=True)  # one write: the tables of parallel jobs do not interleave, even through a pipe
    log_to_files(text)  # the job's log file holds the table too, without a second copy on the console
    spec = settings.retrieval.objective
    value = objective_value(metrics, spec)
    aug = dataclasses.asdict(settings.augmentation)
    summary: dict[str, Any] = {
        "metrics": result.to_json(details=settings.metrics.details),
        "objective": {"name": spec, "value": value},
        "augmentation": aug,
        "depth": settings.retrieval.depth,
        "split": settings.retrieval.split,
        "questions": questions,
        "checkpoint": checkpoint,
        "artifacts": dict(artifacts),
        **extra,
    }
    if base is not None and comparison is not None:
        summary["baseline"] = base
        summary["significance"] = comparison.to_json()
    run = _log(settings, result, metrics, base, comparison)
    if run is not None:
        summary["wandb"] = run
    atomic_write_json(out_dir / "results.json", summary)
    write_trial_record(
        out_dir,
        aug,
        metrics,
        objective=value,
        objective_spec=spec,
        markers=_markers_json(comparison),
        baseline=base,
        wandb=run,
        system=xqg_name(settings) if settings.augmentation.enabled else None,
    )
    log.info("wrote %s", out_dir / "results.json")
    return summary


def _log(
    settings: EvaluateSettings,
    result: EvalResult,
    metrics: Mapping[str, Any],
    base: Mapping[str, Any] | None,
    comparison: Comparison | None,
) -> dict[str, Any] | None:
    """The evaluate run in W&B: final values as the run's summary (no one-point histories) and the per-language
    table; returns the run's :meth:`~xqg.tasks.tracking.Tracker.info` (None when tracking is off)."""
    langs = [*result.languages, "macro"]
    aug = settings.augmentation
    name = run_name("evaluate", alpha=aug.alpha if aug.enabled else None, n=aug.n if aug.enabled else None)
    tracker = start_run(settings.logger, config=dataclasses.asdict(settings), job_type="evaluate", name=name)
    with tracker:
        flat = {f"{m}/{lang}": block[lang] for m, block in metrics.items() for lang in langs}
        if settings.augmentation.enabled:
            flat.update({"xqg/alpha": settings.augmentation.alpha, "xqg/n": settings.augmentation.n})
        if base is not None and comparison is not None:
            flat.update({f"baseline/{m}/{x}": b[x] for m, b in base.items() for x in langs})
            for m, per in comparison.tests.items():
                for lang, tests in per.items():
                    for t, r in tests.items():
                        flat[f"p_value/{t}/{m}/{lang}"] = r.p_value
        tracker.log_summary(flat)
        tracker.log_table(
            "retrieval", ["metric", *langs], [[m, *(b[x] for x in langs)] for m, b in metrics.items()]
        )
        return tracker.info()
