"""What a sweep trial returns and leaves behind (the search itself is Hydra's Optuna sweeper, ``sweeps/``).

* :func:`objective_value`: the value(s) a trial returns: one macro metric, one language, a weighted mix, or a
  list of those for a multi-objective study (``retrieval.objective``).
* :func:`write_trial_record`: what a trial leaves in its run folder (``trial.json``: params, per-language
  metrics, significance markers vs alpha = 0), the input of the study report (:mod:`xqg.tasks.study_report`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from xqg.core.artifacts import atomic_write_json
from xqg.core.errors import XqgInputError

TRIAL_RECORD = "trial.json"


# -- the objective ----------------------------------------------------------------------------------------------
def _metric_value(metrics: Mapping[str, Any], name: str) -> float:
    metric, _, lang = name.partition("/")
    block = metrics.get(metric)
    if not isinstance(block, Mapping):
        raise XqgInputError(
            f"{metric!r} is not among the computed metrics {sorted(metrics)}", field="objective"
        )
    key = lang or "macro"
    if key not in block:
        raise XqgInputError(f"{metric} has no value for {key!r}", field="objective")
    return float(block[key])


def _single_objective(metrics: Mapping[str, Any], spec: Any) -> float:
    if isinstance(spec, str):
        return _metric_value(metrics, spec)
    if isinstance(spec, Mapping):
        if not spec:
            raise XqgInputError("empty objective mix", field="objective")
        return float(sum(float(w) * _metric_value(metrics, str(m)) for m, w in spec.items()))
    raise XqgInputError(
        f"objective must be a metric name or {{metric: weight}}, got {spec!r}", field="objective"
    )


def objective_value(metrics: Mapping[str, Any], spec: Any = "R@2kt") -> float | list[float]:
    """What a trial returns to Optuna, from a metrics JSON (``{"R@2kt": {"ar": .., "macro": ..}, ...}``).

    ``spec``: ``"R@2kt"`` (macro), ``"R@2kt/ja"`` (one language), ``{"R@2kt": 0.5, "R@5kt": 0.5}`` (weighted
    mix of macros), or a list of those (one value per objective of a multi-objective study)."""
    if isinstance(spec, Sequence) and not isinstance(spec, str):
        if not spec:
            raise XqgInputError("empty objective list", field="objective")
        return [_single_objective(metrics, s) for s in spec]
    return _single_objective(metrics, spec)


def objective_names(spec: Any) -> list[str]:
    """Display names of the objectives (one per Optuna direction)."""
    specs = list(spec) if isinstance(spec, Sequence) and not isinstance(spec, str) else [spec]
    out = []
    for s in specs:
        if isinstance(s, Mapping):
            out.append(" + ".join(f"{float(w):g}*{m}" for m, w in s.items()))
        else:
            out.append(str(s))
    return out


# -- per-trial records ------------------------------------------------------------------------------------------
FUSION_KEYS = ("enabled", "alpha", "n", "mode", "languages", "tune_split")


def write_trial_record(
    out_dir: str | Path,
    augmentation: Mapping[str, Any],
    metrics: Mapping[str, Any],
    *,
    objective: Any = None,
    objective_spec: Any = None,
    markers: Mapping[str, Mapping[str, str]] | None = None,
    baseline: Mapping[str, Any] | None = None,
    wandb: Mapping[str, Any] | None = None,
    system: str | None = None,
) -> Path:
    """``<out_dir>/trial.json``: the trial's fusion settings, metrics JSON, objective, and optionally the
    significance markers vs alpha = 0 (``{metric: {lang or 'macro': '†‡'}}``), the baseline's metrics and the
    job's W&B run (``{id, name, group, job_type, dir}``, :meth:`xqg.tasks.tracking.Tracker.info`)."""
    aug = dict(augmentation)
    params = {k: aug.get(k) for k in FUSION_KEYS if k in aug}
    if not params.get("enabled", True):
        params["alpha"] = 0.0  # augmentation off is the alpha = 0 point of every curve
    record: dict[str, Any] = {"params": params, "metrics": dict(metrics)}
    if objective is not None:
        record["objective"] = objective
        record["objective_names"] = objective_names(objective_spec if objective_spec is not None else "R@2kt")
    if markers is not None:
        record["markers"] = {k: dict(v) for k, v in markers.items()}
    if baseline is not None:
        record["baseline"] = dict(baseline)
    if wandb is not None:
        record["wandb"] = dict(wandb)
    if system is not None:
        record["system"] = system  # the fused system's name, e.g. "+xQG oracle"
    path = Path(out_dir) / TRIAL_RECORD
    atomic_write_json(path, record)
    return path


def load_trial_records(*roots: str | Path) -> list[dict[str, Any]]:
    """Every ``trial.json`` one level under the given sweep folders (a multirun's job folders), sorted by
    folder; each gets ``"dir"``."""
    out = []
    seen: set[Path] = set()
    for root in roots:
        for path in sorted(
            Path(root).glob(f"*/{TRIAL_RECORD}"), key=lambda p: (len(p.parent.name), p.parent.name)
        ):
            real = path.resolve()
            if real in seen:
                continue
            seen.add(real)
            try:
                rec = json.loads(path.read_text())
            except json.JSONDecodeError as e:
                raise XqgInputError(f"not valid JSON: {e.msg}", path=path, line=e.lineno) from None
            rec["dir"] = str(path.parent)
            out.append(rec)
    return out
