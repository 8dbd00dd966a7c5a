"""Sweeps over the xQG settings: the tune/report split, the objective, per-trial records and the study report.

The search itself is Hydra's Optuna sweeper (``python evaluate.py -m ... sweep=alpha_n``, definitions in
``sweeps/``); this module holds what the sweeper does not do:

* :func:`split_questions`: a deterministic split of the dev questions by a hash of the qid into ``tune`` and
  ``report`` halves (``augmentation.tune_split``), so alpha and n chosen on one half are reported on the other.
* :func:`objective_value`: the value(s) a trial returns: one macro metric, one language, a weighted mix, or a
  list of those for a multi-objective study (``retrieval.objective``).
* :func:`write_trial_record`: what a trial leaves in its run folder (``trial.json``: params, per-language
  metrics, significance markers vs alpha = 0), the input of the study's plots.
* :func:`write_study_report` / :class:`StudyReportCallback`: at the end of a multirun, ``<sweep dir>/study/``
  gets ``study_summary.json`` (best parameters / Pareto front), ``trials.csv``, Optuna's importance and slice
  plots and the paper-style R@kt-vs-alpha and R@kt-vs-n plots (:mod:`xqg.evaluation.plots`).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from xqg.core.artifacts import atomic_write_json, atomic_write_text
from xqg.core.config import plain
from xqg.core.errors import XqgInputError

log = logging.getLogger(__name__)

SPLITS = ("tune", "report")
DEFAULT_SALT = "xqg-tune-split"
TRIAL_RECORD = "trial.json"
STUDY_DIR = "study"
T = TypeVar("T")


# -- honest tuning: a deterministic split of the questions ------------------------------------------------------
def split_of(qid: str, salt: str = DEFAULT_SALT, tune_fraction: float = 0.5) -> str:
    """``"tune"`` or ``"report"`` for one qid: a hash of ``salt`` and the qid, so the split is the same on every
    machine and run, independent of question order and of which other questions exist."""
    if not 0.0 < tune_fraction < 1.0:
        raise XqgInputError(f"must be in (0, 1), got {tune_fraction}", field="augmentation.tune_fraction")
    digest = hashlib.sha256(f"{salt}\0{qid}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2.0**64
    return "tune" if u < tune_fraction else "report"


def _qid(item: Any) -> str:
    if isinstance(item, str):
        return item
    for attr in ("qid", "id"):
        if hasattr(item, attr):
            return str(getattr(item, attr))
        if isinstance(item, Mapping) and attr in item:
            return str(item[attr])
    raise TypeError(f"cannot find a qid in {type(item).__name__}")


def split_questions(
    questions: Sequence[T], part: str | None, salt: str = DEFAULT_SALT, tune_fraction: float = 0.5
) -> list[T]:
    """The questions (objects with ``qid``/``id``, mappings or plain qids) in ``part`` (``tune``/``report``),
    in their input order; ``part=None`` keeps all of them."""
    if part is None:
        return list(questions)
    if part not in SPLITS:
        raise XqgInputError(f"must be null, tune or report, got {part!r}", field="augmentation.tune_split")
    return [q for q in questions if split_of(_qid(q), salt, tune_fraction) == part]


def split_from_config(questions: Sequence[T], augmentation: Mapping[str, Any] | None) -> list[T]:
    """:func:`split_questions` driven by ``augmentation.tune_split`` / ``split_salt`` / ``tune_fraction``."""
    aug = augmentation or {}
    return split_questions(
        questions,
        aug.get("tune_split"),
        str(aug.get("split_salt") or DEFAULT_SALT),
        float(aug.get("tune_fraction") or 0.5),
    )


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
) -> Path:
    """``<out_dir>/trial.json``: the trial's fusion settings, metrics JSON, objective, and optionally the
    significance markers vs alpha = 0 (``{metric: {lang or 'macro': '†‡'}}``) and the baseline's metrics."""
    aug = plain(augmentation)
    params = {k: aug.get(k) for k in FUSION_KEYS if k in aug}
    if not params.get("enabled", True):
        params["alpha"] = 0.0  # augmentation off is the alpha = 0 point of every curve
    record: dict[str, Any] = {"params": params, "metrics": plain(metrics)}
    if objective is not None:
        record["objective"] = objective
        record["objective_names"] = objective_names(objective_spec if objective_spec is not None else "R@2kt")
    if markers is not None:
        record["markers"] = plain(markers)
    if baseline is not None:
        record["baseline"] = plain(baseline)
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


# -- the study report -------------------------------------------------------------------------------------------
def load_study(storage: str, study_name: str) -> Any:
    import optuna

    return optuna.load_study(study_name=study_name, storage=storage)


def study_summary(study: Any) -> dict[str, Any]:
    """Best parameters and value(s) (or the Pareto front), directions, trial counts by state."""
    import optuna

    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    states: dict[str, int] = {}
    for t in trials:
        states[t.state.name] = states.get(t.state.name, 0) + 1
    out: dict[str, Any] = {
        "study_name": study.study_name,
        "directions": [d.name.lower() for d in study.directions],
        "trials": len(trials),
        "states": states,
    }
    if not complete:
        return out
    if len(study.directions) == 1:
        best = study.best_trial
        out.update(best_trial=best.number, best_params=best.params, best_value=best.value)
    else:
        out["pareto_front"] = [
            {"trial": t.number, "params": t.params, "values": t.values} for t in study.best_trials
        ]
    return out


def trials_csv(study: Any) -> str:
    """One row per trial: number, state, value(s), params (sorted by name), duration in seconds."""
    trials = study.get_trials(deepcopy=False)
    params = sorted({p for t in trials for p in t.params})
    n_obj = len(study.directions)
    value_cols = ["value"] if n_obj == 1 else [f"value_{i}" for i in range(n_obj)]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["number", "state", *value_cols, *params, "duration_s"])
    for t in trials:
        values = list(t.values) if t.values is not None else [None] * n_obj
        dur = t.duration.total_seconds() if t.duration is not None else None
        w.writerow([t.number, t.state.name, *values, *(t.params.get(p) for p in params), dur])
    return buf.getvalue()


def _importance_skip_reason(study: Any) -> str | None:
    import optuna

    complete = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    if len(complete) < 2:
        return f"{len(complete)} complete trial(s); importance needs at least 2"
    varied = [
        p for p in {p for t in complete for p in t.params} if len({t.params.get(p) for t in complete}) > 1
    ]
    if not varied:
        return "no parameter took 2 or more distinct values"
    return None


def optuna_plots(
    study: Any, out_dir: str | Path, target_names: Sequence[str] | None = None
) -> dict[str, Any]:
    """Optuna's parameter-importance and slice plots as PNG (one per objective); importance is skipped (and
    said so) only when it cannot be computed: fewer than 2 complete trials or no varied parameter."""
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.exceptions import ExperimentalWarning

    # grid sweeps give categorical axes of numbers; matplotlib logs a note per axis that says nothing useful
    logging.getLogger("matplotlib.category").setLevel(logging.WARNING)
    from optuna.visualization import matplotlib as ovm

    warnings.filterwarnings("ignore", category=ExperimentalWarning, module="xqg.tasks.sweep")

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Any] = {}
    n_obj = len(study.directions)
    names = list(target_names or [])
    skip = _importance_skip_reason(study)
    for i in range(n_obj):
        suffix = "" if n_obj == 1 else f"_{i}"
        name = names[i] if i < len(names) else ("objective" if n_obj == 1 else f"objective {i}")
        target = None if n_obj == 1 else (lambda t, i=i: t.values[i])
        if skip is None:
            ax = ovm.plot_param_importances(study, target=target, target_name=name)
            path = out / f"optuna_importance{suffix}.png"
            ax.figure.savefig(path, dpi=120, bbox_inches="tight")
            plt.close(ax.figure)
            written[path.stem] = str(path)
        else:
            written[f"optuna_importance{suffix}"] = f"skipped: {skip}"
        if study.get_trials(deepcopy=False, states=None):
            axes = ovm.plot_slice(study, target=target, target_name=name)
            fig = axes.flat[0].figure if hasattr(axes, "flat") else axes.figure
            path = out / f"optuna_slice{suffix}.png"
            fig.savefig(path, dpi=120, bbox_inches="tight")
            plt.close(fig)
            written[path.stem] = str(path)
    return written


def write_study_report(
    study: Any,
    out_dir: str | Path,
    records: Sequence[Mapping[str, Any]] = (),
    objective_spec: Any = None,
    metrics: Sequence[str] = ("R@2kt", "R@5kt"),
) -> dict[str, Any]:
    """``study_summary.json``, ``trials.csv``, Optuna plots and (from trial records) the paper-style plots and
    the baseline-vs-best table (``table.md``, when the records carry alpha = 0 and the best setting)."""
    from xqg.evaluation import plots

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = study_summary(study)
    names = objective_names(objective_spec) if objective_spec is not None else None
    if names:
        summary["objectives"] = names
    atomic_write_text(out / "trials.csv", trials_csv(study))
    files: dict[str, Any] = {"trials": str(out / "trials.csv")}
    if summary.get("states", {}).get("COMPLETE"):
        files.update(optuna_plots(study, out, names))
    if records:
        files.update(plots.paper_plots(records, out, metrics=metrics, best=summary.get("best_params")))
        table = plots.best_vs_baseline_table(records, summary.get("best_params"), fmt="markdown")
        if table:
            atomic_write_text(out / "table.md", table + "\n")
            files["table"] = str(out / "table.md")
    summary["files"] = files
    atomic_write_json(out / "study_summary.json", summary)
    return summary


def _sqlite_dirs(storage: Any) -> list[Path]:
    s = str(storage or "")
    if s.startswith("sqlite:///"):
        return [Path(s[len("sqlite:///") :]).parent]
    return []


try:
    from hydra.experimental.callback import Callback as _HydraCallback
except ImportError:  # pragma: no cover
    _HydraCallback = object  # type: ignore[assignment,misc]


class StudyReportCallback(_HydraCallback):  # type: ignore[misc,valid-type]
    """Hydra callback for Optuna sweeps (``hydra.callbacks`` in ``sweeps/*.yaml``).

    ``on_multirun_start`` creates the sweep folder, so ``sqlite:///<sweep dir>/optuna.db`` can be opened before
    the first job; ``on_multirun_end`` writes the study report into ``<sweep dir>/study/`` from the storage and
    the trials' ``trial.json`` (in this sweep folder and, on a resumed study, the storage's folder).
    """

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        Path(str(config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        sweeper = config.hydra.sweeper
        storage, name = sweeper.get("storage"), sweeper.get("study_name")
        if not storage or not name:
            log.info("study report skipped: the sweep has no persistent storage / study name")
            return
        sweep_dir = Path(str(config.hydra.sweep.dir))
        roots: list[Path] = [
            sweep_dir,
            *[d for d in _sqlite_dirs(storage) if d.resolve() != sweep_dir.resolve()],
        ]
        records = load_trial_records(*roots)
        spec = plain(config.get("retrieval", {}).get("objective")) if "retrieval" in config else None
        summary = write_study_report(
            load_study(str(storage), str(name)), sweep_dir / STUDY_DIR, records, spec
        )
        log.info(
            "study report in %s: %s",
            sweep_dir / STUDY_DIR,
            {k: summary.get(k) for k in ("best_params", "best_value")},
        )
        _log_study(config, summary)
        table = summary.get("files", {}).get("table")
        if table:  # the sweep's answer, where a researcher looks first: the end of the console output
            print(f"\nBest xQG setting vs the baseline ({sweep_dir / STUDY_DIR}):\n")
            print(Path(table).read_text())


def _log_study(config: Any, summary: Mapping[str, Any]) -> None:
    """The study's plots, trials table and best setting as one W&B run in the study's group (job type
    ``study``), beside the trials' own runs; nothing when tracking is off."""
    from xqg.tasks.tracking import start_run

    if "logger" not in config:
        return
    tracker = start_run(config, job_type="study")
    try:
        files = summary.get("files", {})
        for name, path in files.items():
            if str(path).endswith(".png"):
                tracker.log_image(f"study/{name}", path)
        trials = files.get("trials")
        if trials and Path(trials).exists():
            rows = list(csv.reader(io.StringIO(Path(trials).read_text())))
            if len(rows) > 1:
                tracker.log_table("study/trials", rows[0], rows[1:])
        best = summary.get("best_value")
        if isinstance(best, int | float):
            tracker.log_metrics({"study/best_value": float(best)})
    finally:
        tracker.finish()
