"""The study report of an Optuna sweep: ``<sweep dir>/study/`` with ``study_summary.json`` (best parameters or the
Pareto front), ``trials.csv`` (Optuna's own trials table), Optuna's importance, slice and optimisation-history
plots, the paper-style R@kt-vs-alpha, R@kt-vs-n and alpha x n heatmap plots and the best-vs-baseline table
(:mod:`xqg.evaluation.plots`), written by the Hydra callback :class:`StudyReportCallback` at the end of a
multirun. The figures and tables are also stored as Optuna artifacts of the study (``<storage folder>/artifacts``,
so ``optuna-dashboard <storage> --artifact-dir <that folder>`` shows them), logged to W&B as a ``study`` run
with a per-trial x per-language table, and, when the study tuned on the ``tune`` questions, the best setting is
scored on the ``report`` questions too (:mod:`xqg.tasks.study_rescore`). The sweep ends by listing its files."""

from __future__ import annotations

import csv
import logging
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, ListConfig, OmegaConf

from xqg.core.artifacts import atomic_path, atomic_write_json
from xqg.evaluation import plots
from xqg.tasks.console import log_to_files
from xqg.tasks.study_rescore import rescore_best
from xqg.tasks.sweep import load_trial_records, objective_names
from xqg.tasks.sweep_resume import SQLITE, prepare_resume, register_job
from xqg.tasks.tracking import run_name, start_run
from xqg.tasks.trial_attrs import RUN_DIR, record_trial, set_metric_names

log = logging.getLogger(__name__)
STUDY_DIR = "study"
SWEEP_LOG = "sweep.log"
ARTIFACT_DIR = "artifacts"
ARTIFACT_SUFFIXES = (".png", ".md", ".tex", ".csv", ".json")


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
    """Optuna's parameter-importance, slice and optimisation-history plots as PNG (one per objective);
    importance is skipped (and said so) only when it cannot be computed: fewer than 2 complete trials or no
    varied parameter."""
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
            ax = ovm.plot_optimization_history(study, target=target, target_name=name)
            path = out / f"optuna_history{suffix}.png"
            ax.figure.savefig(path, dpi=120, bbox_inches="tight")
            plt.close(ax.figure)
            written[path.stem] = str(path)
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
    artifact_dir: str | Path | None = None,
) -> dict[str, Any]:
    """``study_summary.json``, ``trials.csv``, Optuna plots and (from trial records) the paper-style plots and
    the baseline-vs-best table (``table.md`` and ``table.tex``, when the records carry alpha = 0 and the best
    setting), with a plain sentence (``no_gain``) when no setting beat the baseline; with ``artifact_dir``, the
    figures and tables are stored as Optuna artifacts of the study (:func:`store_artifacts`)."""
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
        split = next((r["params"].get("tune_split") for r in records if r["params"].get("tune_split")), None)
        if split:
            summary["split"] = split
        no_gain = plots.no_gain_sentence(records, str((names or ["R@2kt"])[0]).partition("/")[0])
        if no_gain:
            summary["no_gain"] = no_gain
    summary["files"] = files
    atomic_write_json(out / "study_summary.json", summary)
    if artifact_dir is not None:
        summary["artifacts"] = store_artifacts(study, sorted(out.glob("*")), artifact_dir)
    return summary


def artifact_dir_for(storage: Any, sweep_dir: str | Path) -> Path:
    """Where a study's artifacts live: beside a SQLite storage (a resume finds them), else in the sweep folder."""
    s = str(storage or "")
    if s.startswith(SQLITE):
        return Path(s[len(SQLITE) :]).parent / ARTIFACT_DIR
    return Path(sweep_dir) / ARTIFACT_DIR


def store_artifacts(study: optuna.Study, paths: Sequence[Path], artifact_dir: str | Path) -> dict[str, str]:
    """Store the report's figures and tables (:data:`ARTIFACT_SUFFIXES`) as artifacts of ``study`` in a
    ``FileSystemArtifactStore`` at ``artifact_dir``; a file the study already has under that name (a resumed
    study's earlier report) is replaced in place, so the dashboard lists each file once. Returns
    ``{filename: artifact id}``."""
    from optuna.artifacts import FileSystemArtifactStore, get_all_artifact_meta, upload_artifact

    Path(artifact_dir).mkdir(parents=True, exist_ok=True)
    store = FileSystemArtifactStore(str(artifact_dir))
    known = {m.filename: m.artifact_id for m in get_all_artifact_meta(study)}
    stored: dict[str, str] = {}
    for path in paths:
        if not path.is_file() or path.suffix not in ARTIFACT_SUFFIXES:
            continue
        if path.name in known:
            with path.open("rb") as f:
                store.write(known[path.name], f)
            stored[path.name] = known[path.name]
        else:
            stored[path.name] = upload_artifact(
                artifact_store=store, file_path=str(path), study_or_trial=study
            )
    return stored


def _objective_spec(config: Any) -> Any:
    """``retrieval.objective`` of the composed config (``R@2kt`` when the app has none)."""
    spec = OmegaConf.select(config, "retrieval.objective", default="R@2kt")
    if isinstance(spec, DictConfig | ListConfig):
        return OmegaConf.to_container(spec, resolve=True)
    return spec


def _sqlite_dirs(storage: Any) -> list[Path]:
    s = str(storage or "")
    if s.startswith(SQLITE):
        return [Path(s[len(SQLITE) :]).parent]
    return []


def _say(text: str) -> None:
    """On the console and in the job's log file."""
    print("\n" + text, flush=True)  # one write: two studies may share a console or a pipe (make -j2 demo)
    log_to_files(text)


def best_table_text(summary: Mapping[str, Any], where: Path) -> str | None:
    """The study's answer as printed: heading (with the questions it was tuned on and the study's name: two
    studies may end on one console), table, and the plain sentence when no setting beat the baseline."""
    table = summary.get("files", {}).get("table")
    lines = []
    if table:
        split = f" on the {summary['split']} questions" if summary.get("split") else ""
        lines.append(
            f"{summary.get('table_heading')}{split} (study {summary.get('study_name')}, {where}):\n\n"
            f"{Path(table).read_text().rstrip()}"
        )
    if summary.get("no_gain"):
        lines.append(str(summary["no_gain"]))
    return "\n\n".join(lines) or None


def files_written(sweep_dir: Path, report_dir: Path, artifacts: Path | None = None, stored: int = 0) -> str:
    """The list a sweep ends with: its trials' run folders, every file of its report and its Optuna artifacts."""
    lines = [f"Files written by this sweep ({sweep_dir}):", f"  {sweep_dir / SWEEP_LOG}"]
    jobs = sorted(
        (d for d in sweep_dir.iterdir() if d.is_dir() and d.name.isdigit()), key=lambda d: int(d.name)
    )
    if jobs:
        lines.append(f"  {len(jobs)} trial run folder(s): {jobs[0]} ... {jobs[-1]}")
    lines += [f"  {p}" for p in sorted(report_dir.rglob("*")) if p.is_file()]
    if artifacts is not None and stored:
        lines.append(f"  {artifacts}/ ({stored} Optuna artifacts of the study: its figures and tables)")
    return "\n".join(lines)


class StudyReportCallback(Callback):
    """Hydra callback for Optuna sweeps (``hydra.callbacks`` in ``sweeps/*.yaml``).

    ``on_multirun_start`` creates the sweep folder, so ``sqlite:///<sweep dir>/optuna.db`` can be opened before
    the first job, and names and prepares a resumed study (:func:`xqg.tasks.sweep_resume.prepare_resume`: a
    study name unique per study, interrupted trials marked failed and re-queued, no finished grid point
    repeated, seeded samplers not replayed); Hydra calls it before it builds the sweeper. ``on_multirun_end``
    writes the study report into ``<sweep dir>/study/`` from the storage and the trials' ``trial.json`` (in
    this sweep folder and, on a resumed study, the storage's folder), scores the best setting on the ``report``
    questions when the study tuned on ``tune``, and lists the files the sweep wrote.
    """

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        Path(str(config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        prepare_resume(config)

    def on_job_start(self, config: Any, **kwargs: Any) -> None:
        register_job(config)  # lets a later resume tell this sweep from a killed one

    def on_job_end(self, config: Any, job_return: Any, **kwargs: Any) -> None:
        """The job's metrics, baseline, markers, run folder and W&B run onto its Optuna trial (still running)."""
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
        with sweep_log(sweep_dir / SWEEP_LOG):
            self._report(config, str(storage), str(name), sweep_dir)

    def _report(self, config: Any, storage: str, name: str, sweep_dir: Path) -> None:
        roots: list[Path] = [
            sweep_dir,
            *[d for d in _sqlite_dirs(storage) if d.resolve() != sweep_dir.resolve()],
        ]
        records = load_trial_records(*roots)
        study = load_study(storage, name)
        artifacts = artifact_dir_for(storage, sweep_dir)
        report_dir = sweep_dir / STUDY_DIR
        summary = write_study_report(
            study, report_dir, records, _objective_spec(config), artifact_dir=artifacts
        )
        log.info(
            "study report in %s: %s", report_dir, {k: summary.get(k) for k in ("best_params", "best_value")}
        )
        text = best_table_text(summary, report_dir)
        if text:  # the sweep's answer, where a researcher looks first: the end of the console output
            _say(text)
        rescore_best(config, summary.get("best_params"), report_dir / "report")
        _log_study(config, summary, study, records)  # last: the files and tables never wait on W&B
        stored = len(summary.get("artifacts") or {})
        _say(files_written(sweep_dir, report_dir, artifacts, stored))
        if stored:
            _say(f"Optuna dashboard: optuna-dashboard {storage} --artifact-dir {artifacts}")


@contextmanager
def sweep_log(path: Path) -> Iterator[None]:
    """``<sweep dir>/sweep.log`` for the sweep's own end (the study table, the ``report`` scoring, the file list):
    the jobs have their log files, the sweep process has none of its own in Hydra."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()


def trial_language_rows(
    study: optuna.Study, records: Sequence[Mapping[str, Any]], metrics: Sequence[str] = ("R@2kt", "R@5kt")
) -> tuple[list[str], list[list[Any]]]:
    """The per-trial x per-language table of the study run: one row per trial and metric (trial number as text,
    alpha, n, each language, macro, the trial's W&B run), the baseline's rows first (trial ``baseline``)."""
    number = {t.user_attrs.get(RUN_DIR): t.number for t in study.get_trials(deepcopy=False)}
    langs = [lang for m in metrics for lang in plots.languages(records, m)]
    langs = list(dict.fromkeys(langs))
    columns = ["trial", "alpha", "n", "metric", *langs, "macro", "wandb_run"]

    def row(trial: Any, alpha: Any, n: Any, metric: str, block: Mapping[str, Any], run: Any) -> list[Any]:
        return [trial, alpha, n, metric, *(block.get(x) for x in [*langs, "macro"]), run]

    rows: list[list[Any]] = []
    base = next((r["baseline"] for r in records if isinstance(r.get("baseline"), Mapping)), None)
    for m in metrics:
        if base is not None and m in base:
            rows.append(row("baseline", 0.0, None, m, base[m], None))
    for r in sorted(records, key=lambda r: number.get(r.get("dir"), 10**9)):
        p = r["params"]
        for m in metrics:
            if m in r["metrics"]:
                trial = number.get(r.get("dir"))
                trial = "" if trial is None else str(trial)  # one type per column (W&B tables insist)
                run = (r.get("wandb") or {}).get("name")
                rows.append(row(trial, p.get("alpha"), p.get("n"), m, r["metrics"][m], run))
    return columns, rows


def _log_study(
    config: Any, summary: Mapping[str, Any], study: optuna.Study, records: Sequence[Mapping[str, Any]] = ()
) -> None:
    """The study's plots, trials table, per-trial x per-language table (with the baseline) and best setting as
    one W&B run (job type ``study``) in the study's group, beside the trials' own runs; nothing when tracking
    is off. The run ends failed (non-zero exit code) when logging raises."""
    if "logger" not in config:
        return
    logger = OmegaConf.to_container(config.logger, resolve=True)
    choices = OmegaConf.select(config, "hydra.runtime.choices", default={}) or {}
    name = run_name("study", experiment=choices.get("experiment")) + f"-{study.study_name}"
    tracker = start_run(logger, config={"study": dict(summary)}, job_type="study", name=name)  # type: ignore[arg-type]
    with tracker:
        files = summary.get("files", {})
        for key, path in files.items():
            if str(path).endswith(".png"):
                tracker.log_image(f"study/{key}", path)
        trials = files.get("trials")
        if trials and Path(trials).exists():
            rows = list(csv.reader(Path(trials).read_text().splitlines()))
            if len(rows) > 1:
                tracker.log_table("study/trials", rows[0], rows[1:])
        if records:
            columns, table = trial_language_rows(study, records)
            if table:
                tracker.log_table("study/trials_by_language", columns, table)
        best = summary.get("best_value")
        if isinstance(best, int | float):
            tracker.log_summary({"study/best_value": float(best)})
