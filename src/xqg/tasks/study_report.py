"""The study report of an Optuna sweep: ``<sweep dir>/study/`` with ``study_summary.json`` (best parameters or the
Pareto front), ``trials.csv`` (Optuna's own trials table), Optuna's importance and slice plots, the paper-style
R@kt-vs-alpha and R@kt-vs-n plots and the best-vs-baseline table (:mod:`xqg.evaluation.plots`), written by the
Hydra callback :class:`StudyReportCallback` at the end of a multirun and logged to W&B as a ``study`` run."""

from __future__ import annotations

import csv
import logging
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, ListConfig, OmegaConf

from xqg.core.artifacts import atomic_path, atomic_write_json
from xqg.evaluation import plots
from xqg.tasks.console import log_to_files
from xqg.tasks.sweep import load_trial_records, objective_names
from xqg.tasks.sweep_resume import prepare_resume, register_job
from xqg.tasks.tracking import start_run
from xqg.tasks.trial_attrs import record_trial, set_metric_names

log = logging.getLogger(__name__)
STUDY_DIR = "study"


def load_study(storage: str, study_name: str) -> optuna.Study:
    return optuna.load_study(study_name=study_name, storage=storage)


def study_summary(study: optuna.Study) -> dict[str, Any]:
    """Best parameters and value(s) (or the Pareto front), directions, trial counts by state."""
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


def write_trials_table(study: optuna.Study, path: Path) -> None:
    """Optuna's own trials table (``study.trials_dataframe()``: number, state, value(s) under the objectives'
    names, params, the trials' metrics and markers (:mod:`xqg.tasks.trial_attrs`), duration) as CSV."""
    frame = study.trials_dataframe(attrs=("number", "state", "value", "params", "user_attrs", "duration"))
    frame.columns = [c.removeprefix("params_").removeprefix("user_attrs_") for c in frame.columns]
    if "duration" in frame:
        frame["duration"] = frame["duration"].dt.total_seconds()
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def _importance_skip_reason(study: optuna.Study) -> str | None:
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
    study: optuna.Study, out_dir: str | Path, target_names: Sequence[str] | None = None
) -> dict[str, Any]:
    """Optuna's parameter-importance and slice plots as PNG (one per objective); importance is skipped (and
    said so) only when it cannot be computed: fewer than 2 complete trials or no varied parameter."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.exceptions import ExperimentalWarning

    # grid sweeps give categorical axes of numbers; matplotlib logs a note per axis that says nothing useful
    logging.getLogger("matplotlib.category").setLevel(logging.WARNING)
    from optuna.visualization import matplotlib as ovm

    warnings.filterwarnings("ignore", category=ExperimentalWarning, module=__name__)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Any] = {}
    n_obj = len(study.directions)
    names = list(target_names or [])
    skip = _importance_skip_reason(study)
    # Optuna's matplotlib plots call plt.style.use('ggplot'), a global change: keep it inside this context
    with plt.rc_context():
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
    study: optuna.Study,
    out_dir: str | Path,
    records: Sequence[Mapping[str, Any]] = (),
    objective_spec: Any = None,
    metrics: Sequence[str] = ("R@2kt", "R@5kt"),
) -> dict[str, Any]:
    """``study_summary.json``, ``trials.csv``, Optuna plots and (from trial records) the paper-style plots and
    the baseline-vs-best table (``table.md``, when the records carry alpha = 0 and the best setting)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = study_summary(study)
    names = objective_names(objective_spec) if objective_spec is not None else None
    if names:
        summary["objectives"] = names
        set_metric_names(study, names)
    write_trials_table(study, out / "trials.csv")
    files: dict[str, Any] = {"trials": str(out / "trials.csv")}
    if summary.get("states", {}).get("COMPLETE"):
        files.update(optuna_plots(study, out, names))
    if records:
        files.update(plots.paper_plots(records, out, metrics=metrics, best=summary.get("best_params")))
        best = summary.get("best_params")
        for key, fmt, name in (("table", "markdown", "table.md"), ("table_tex", "latex", "table.tex")):
            table = plots.best_vs_baseline_table(records, best, fmt=fmt)
            if table:
                with atomic_path(out / name) as tmp:
                    tmp.write_text(table + "\n")
                files[key] = str(out / name)
        if "table" in files:
            summary["table_heading"] = plots.best_vs_baseline_heading(records, best)
    summary["files"] = files
    atomic_write_json(out / "study_summary.json", summary)
    return summary


def _objective_spec(config: Any) -> Any:
    """``retrieval.objective`` of the composed config (``R@2kt`` when the app has none)."""
    spec = OmegaConf.select(config, "retrieval.objective", default="R@2kt")
    if isinstance(spec, DictConfig | ListConfig):
        return OmegaConf.to_container(spec, resolve=True)
    return spec


def _sqlite_dirs(storage: Any) -> list[Path]:
    s = str(storage or "")
    if s.startswith("sqlite:///"):
        return [Path(s[len("sqlite:///") :]).parent]
    return []


class StudyReportCallback(Callback):
    """Hydra callback for Optuna sweeps (``hydra.callbacks`` in ``sweeps/*.yaml``).

    ``on_multirun_start`` creates the sweep folder, so ``sqlite:///<sweep dir>/optuna.db`` can be opened before
    the first job, and prepares a resumed study (:func:`xqg.tasks.sweep_resume.prepare_resume`: interrupted
    trials marked failed and re-queued, no finished grid point repeated, seeded samplers not replayed); Hydra
    calls it before it builds the sweeper. ``on_multirun_end`` writes the study report into ``<sweep dir>/study/`` from the storage and
    the trials' ``trial.json`` (in this sweep folder and, on a resumed study, the storage's folder).
    """

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        Path(str(config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        prepare_resume(config)

    def on_job_start(self, config: Any, **kwargs: Any) -> None:
        register_job(config)  # lets a later resume tell this sweep from a killed one

    def on_job_end(self, config: Any, job_return: Any, **kwargs: Any) -> None:
        """The job's metrics, baseline, markers and run folder onto its Optuna trial (still running here)."""
        sweeper = config.hydra.get("sweeper") or {}
        storage, name = sweeper.get("storage"), sweeper.get("study_name")
        if not storage or not name:
            return
        record_trial(
            str(storage),
            str(name),
            list(config.hydra.overrides.task),
            str(config.hydra.runtime.output_dir),
            objective_names(_objective_spec(config)),
        )

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
        summary = write_study_report(
            load_study(str(storage), str(name)), sweep_dir / STUDY_DIR, records, _objective_spec(config)
        )
        log.info(
            "study report in %s: %s",
            sweep_dir / STUDY_DIR,
            {k: summary.get(k) for k in ("best_params", "best_value")},
        )
        _log_study(config, summary)
        table = summary.get("files", {}).get("table")
        if table:  # the sweep's answer, where a researcher looks first: the end of the console output
            text = f"{summary.get('table_heading')} ({sweep_dir / STUDY_DIR}):\n\n{Path(table).read_text()}"
            print("\n" + text)
            log_to_files(text)


def _log_study(config: Any, summary: Mapping[str, Any]) -> None:
    """The study's plots, trials table and best setting as one W&B run in the study's group (job type
    ``study``), beside the trials' own runs; nothing when tracking is off."""
    if "logger" not in config:
        return
    logger = OmegaConf.to_container(config.logger, resolve=True)
    tracker = start_run(logger, config={"study": dict(summary)}, job_type="study")  # type: ignore[arg-type]
    try:
        files = summary.get("files", {})
        for name, path in files.items():
            if str(path).endswith(".png"):
                tracker.log_image(f"study/{name}", path)
        trials = files.get("trials")
        if trials and Path(trials).exists():
            rows = list(csv.reader(Path(trials).read_text().splitlines()))
            if len(rows) > 1:
                tracker.log_table("study/trials", rows[0], rows[1:])
        best = summary.get("best_value")
        if isinstance(best, int | float):
            tracker.log_metrics({"study/best_value": float(best)})
    finally:
        tracker.finish()
