"""Sweep helpers: tune/report split, objective, study report; the sweeps/ configs through Hydra + Optuna + SQLite."""

from __future__ import annotations

import csv
import json
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import optuna
import pytest

from helpers.config import compose_config
from xqg.core.errors import XqgInputError
from xqg.evaluation.splits import split_of, split_questions
from xqg.tasks.study_report import write_study_report
from xqg.tasks.sweep import load_trial_records, objective_value, write_trial_record

REPO = Path(__file__).resolve().parents[1]
METRICS = {
    "R@2kt": {"ar": 40.0, "ja": 30.0, "macro": 35.0, "count": {"ar": 10, "ja": 10}},
    "R@5kt": {"ar": 50.0, "ja": 44.0, "macro": 47.0, "count": {"ar": 10, "ja": 10}},
}


def test_split_is_deterministic_disjoint_and_balanced() -> None:
    qids = [f"-{i * 7919 % 100003}x{i}" for i in range(2110)]
    tune = split_questions(qids, "tune")
    report = split_questions(qids, "report")
    assert set(tune).isdisjoint(report) and sorted(tune + report) == sorted(qids)
    assert 0.45 < len(tune) / len(qids) < 0.55
    # order- and neighbour-independent, same on every call; another salt gives another split
    assert split_questions(list(reversed(qids)), "tune") == list(reversed(tune))
    assert split_questions(qids[:100], "tune") == [q for q in tune if q in set(qids[:100])]
    assert split_questions(qids, "tune", salt="other") != tune
    assert split_of(qids[0]) == split_of(qids[0])
    assert split_questions(qids, None) == qids
    with pytest.raises(XqgInputError, match="tune_split"):
        split_questions(qids, "dev")

    # objects with .qid and config-driven use
    class Q:
        def __init__(self, qid: str) -> None:
            self.qid = qid

    objs = [Q(q) for q in qids[:50]]
    got = split_questions(objs, "report", "xqg-tune-split")
    assert [o.qid for o in got] == [q for q in qids[:50] if q in set(report)]


def test_objective_value_variants() -> None:
    assert objective_value(METRICS) == 35.0
    assert objective_value(METRICS, "R@5kt") == 47.0
    assert objective_value(METRICS, "R@2kt/ja") == 30.0
    assert objective_value(METRICS, {"R@2kt": 0.5, "R@5kt": 0.5}) == pytest.approx(41.0)
    assert objective_value(METRICS, ["R@2kt", "R@5kt"]) == [35.0, 47.0]
    with pytest.raises(XqgInputError, match="R@20kt"):
        objective_value(METRICS, "R@20kt")
    with pytest.raises(XqgInputError, match="'te'"):
        objective_value(METRICS, "R@2kt/te")


def _toy_study(values: list[tuple[float, int, float]], storage: str | None = None) -> optuna.Study:
    study = optuna.create_study(direction="maximize", storage=storage, study_name="toy")
    for alpha, n, _v in values:
        study.enqueue_trial({"augmentation.alpha": alpha, "augmentation.n": n})
    for alpha, n, v in values:
        t = study.ask(
            {
                "augmentation.alpha": optuna.distributions.FloatDistribution(0.0, 0.1),
                "augmentation.n": optuna.distributions.IntDistribution(1, 5),
            }
        )
        assert t.params == {"augmentation.alpha": alpha, "augmentation.n": n}
        study.tell(t, v)
    return study


def test_study_report_and_importance_fallback(tmp_path: Path) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = _toy_study([(0.0, 1, 30.0), (0.01, 2, 33.0), (0.05, 3, 31.0), (0.02, 5, 32.0)])
    summary = write_study_report(study, tmp_path / "s")
    assert summary["best_params"] == {"augmentation.alpha": 0.01, "augmentation.n": 2}
    assert summary["best_value"] == 33.0 and summary["states"] == {"COMPLETE": 4}
    rows = list(csv.DictReader((tmp_path / "s" / "trials.csv").open()))
    assert [r["value"] for r in rows] == ["30.0", "33.0", "31.0", "32.0"]
    for name in ("optuna_importance.png", "optuna_slice.png"):
        assert (tmp_path / "s" / name).read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "s" / "study_summary.json").read_text())["best_value"] == 33.0
    # one trial: importance cannot be computed -> said so, the rest still written
    single = _toy_study([(0.01, 2, 33.0)])
    s2 = write_study_report(single, tmp_path / "one")
    assert s2["files"]["optuna_importance"].startswith("skipped:")
    assert (tmp_path / "one" / "optuna_slice.png").exists()


def test_study_run_in_wandb_has_plots_trials_and_a_per_language_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from omegaconf import OmegaConf

    from xqg.tasks import study_report, tracking

    trackers: list[tracking.Tracker] = []
    names: list[str] = []

    def start_run(logger: object, *, config: object, job_type: str, name: str) -> tracking.Tracker:
        assert job_type == "study"
        names.append(name)
        trackers.append(tracking.Tracker(None))
        return trackers[-1]

    monkeypatch.setattr(study_report, "start_run", start_run)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", study_name="toy")
    base = {"R@2kt": {"ar": 30.0, "ja": 20.0, "macro": 25.0}}
    for alpha, n, value in [(0.0, 1, 30.0), (0.01, 2, 33.0)]:
        t = study.ask()
        t.suggest_float("augmentation.alpha", alpha, alpha)
        t.suggest_int("augmentation.n", n, n)
        folder = tmp_path / str(t.number)
        wandb = {"id": f"r{t.number}", "name": f"x{t.number}"}
        write_trial_record(folder, {"alpha": alpha, "n": n}, METRICS, baseline=base, wandb=wandb)
        t.set_user_attr("run_dir", str(folder))
        study.tell(t, value)
    records = load_trial_records(tmp_path)
    summary = write_study_report(study, tmp_path / "s", records)
    config = OmegaConf.create({"logger": {}, "hydra": {"runtime": {"choices": {"experiment": "demo"}}}})
    study_report._log_study(config, summary, study, records)
    (tracker,) = trackers
    assert names == ["demo-study-toy"] and tracker.exit_code == 0
    kinds = {(h["kind"], h.get("name")) for h in tracker.history}
    assert {
        ("image", "study/optuna_slice"),
        ("image", "study/optuna_history"),
        ("image", "study/r2kt_alpha_n"),
    } <= kinds
    (trials,) = [h for h in tracker.history if h.get("name") == "study/trials"]
    assert trials["rows"] == 2
    (by_lang,) = [h for h in tracker.history if h.get("name") == "study/trials_by_language"]
    assert by_lang["columns"] == ["trial", "alpha", "n", "metric", "ar", "ja", "macro", "wandb_run"]
    assert by_lang["data"][0] == ["baseline", 0.0, None, "R@2kt", 30.0, 20.0, 25.0, None]
    assert by_lang["data"][1] == ["0", 0.0, 1, "R@2kt", 40.0, 30.0, 35.0, "x0"]
    assert [r[0] for r in by_lang["data"]] == ["baseline", "0", "0", "1", "1"]  # R@2kt and R@5kt per trial
    import wandb

    wandb.Table(columns=by_lang["columns"], data=by_lang["data"])  # one type per column, as W&B requires
    (final,) = [h["data"] for h in tracker.history if h["kind"] == "summary"]
    assert final == {"study/best_value": 33.0}


def test_study_figures_are_optuna_artifacts_stored_once(tmp_path: Path) -> None:
    from optuna.artifacts import get_all_artifact_meta

    from xqg.tasks.study_report import artifact_dir_for, store_artifacts

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{tmp_path}/sweep/optuna.db"
    (tmp_path / "sweep").mkdir()
    study = optuna.create_study(study_name="toy", storage=storage)
    artifacts = artifact_dir_for(storage, tmp_path / "other")
    assert artifacts == tmp_path / "sweep" / "artifacts"  # beside the storage: a resume finds them
    assert artifact_dir_for("postgresql://h/db", tmp_path / "other") == tmp_path / "other" / "artifacts"
    report = tmp_path / "study"
    report.mkdir()
    for name, data in [
        ("r2kt_alpha_n.png", b"\x89PNG1"),
        ("table.tex", b"t1"),
        ("r2kt_alpha_n.pdf", b"%PDF"),
    ]:
        (report / name).write_bytes(data)
    stored = store_artifacts(study, sorted(report.iterdir()), artifacts)
    assert sorted(stored) == ["r2kt_alpha_n.png", "table.tex"]  # the PDF twin stays in the folder only
    assert (artifacts / stored["table.tex"]).read_bytes() == b"t1"
    # a second report (a resumed study) replaces its files in place: each name once in the dashboard
    (report / "table.tex").write_bytes(b"t2")
    assert store_artifacts(study, sorted(report.iterdir()), artifacts) == stored
    assert (artifacts / stored["table.tex"]).read_bytes() == b"t2"
    metas = get_all_artifact_meta(optuna.load_study(study_name="toy", storage=storage))
    assert sorted(m.filename for m in metas) == ["r2kt_alpha_n.png", "table.tex"]


def test_study_names_are_unique_per_storage_and_kept_on_resume(tmp_path: Path) -> None:
    from omegaconf import OmegaConf

    from xqg.tasks.sweep_resume import derived_study_name, name_study, storage_digest

    a, b = f"sqlite:///{tmp_path}/a/optuna.db", f"sqlite:///{tmp_path}/b/optuna.db"
    assert derived_study_name("xqg-alpha_n", "demo", a) == f"xqg-alpha_n-demo-{storage_digest(a)}"
    assert storage_digest(a) != storage_digest(b) and len(storage_digest(a)) == 8
    assert derived_study_name("s", None, a).startswith("s-default-")
    (tmp_path / "a").mkdir()

    def config(storage: str, *overrides: str) -> Any:
        return OmegaConf.create(
            {
                "hydra": {
                    "sweeper": {"storage": storage, "study_name": "xqg-alpha_n"},
                    "overrides": {"task": list(overrides)},
                    "runtime": {"choices": {"experiment": "demo"}},
                }
            }
        )

    cfg = config(a)
    name = name_study(cfg)
    assert name == derived_study_name("xqg-alpha_n", "demo", a) == cfg.hydra.sweeper.study_name
    assert cfg.hydra.overrides.task == [f"hydra.sweeper.study_name={name}"]  # every job gets it
    given = config(a, "hydra.sweeper.study_name=mine")
    given.hydra.sweeper.study_name = "mine"
    assert name_study(given) == "mine"  # named on the command line: kept
    optuna.create_study(study_name="xqg-alpha_n", storage=a)
    assert name_study(config(a)) == "xqg-alpha_n"  # a study stored under the plain name: resumed as it is


def test_trial_records_roundtrip(tmp_path: Path) -> None:
    write_trial_record(tmp_path / "0", {"enabled": False, "alpha": 0.05, "n": 3}, METRICS)
    write_trial_record(
        tmp_path / "1",
        {"enabled": True, "alpha": 0.01, "n": 2, "other": 1},
        METRICS,
        objective=35.0,
        markers={"R@2kt": {"ar": "†"}},
    )
    recs = load_trial_records(tmp_path)
    assert [r["params"] for r in recs] == [
        {"enabled": False, "alpha": 0.0, "n": 3},
        {"enabled": True, "alpha": 0.01, "n": 2},
    ]
    assert recs[1]["markers"] == {"R@2kt": {"ar": "†"}} and recs[1]["objective_names"] == ["R@2kt"]


def test_trial_attrs_land_on_the_running_trial(tmp_path: Path) -> None:
    from xqg.tasks.trial_attrs import job_trial_number, record_trial, trial_attrs

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{tmp_path}/o.db"
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    dist = {"augmentation.n": optuna.distributions.IntDistribution(1, 5)}
    t1, t2 = study.ask(dist), study.ask(dist)
    write_trial_record(
        tmp_path / "job",
        {"alpha": 0.01, "n": t2.params["augmentation.n"]},
        METRICS,
        objective=35.0,
        markers={"R@2kt": {"ar": "↓†", "ja": ""}},
        baseline=METRICS,
        wandb={"id": "ab12cd34", "name": "demo-evaluate-a0.01-n2", "dir": "/w/offline-run-x-ab12cd34"},
    )
    overrides = [f"augmentation.n={t2.params['augmentation.n']}", "experiment=demo"]
    if t1.params == t2.params:  # the same point twice: the first one without a run folder gets it
        t2 = t1
    assert job_trial_number(storage, "s", overrides) == t2.number  # the job's console label
    assert (
        job_trial_number(None, "s", overrides) is None
        and job_trial_number(storage, "nope", overrides) is None
    )
    assert record_trial(storage, "s", overrides, tmp_path / "job", ["R@2kt"]) == t2.number
    attrs = optuna.load_study(study_name="s", storage=storage).trials[t2.number].user_attrs
    assert attrs["R@2kt/ar"] == 40.0 and attrs["R@5kt/macro"] == 47.0 and attrs["baseline/R@2kt/ja"] == 30.0
    assert attrs["markers/R@2kt/ar"] == "↓†" and "markers/R@2kt/ja" not in attrs
    assert attrs["run_dir"] == str(tmp_path / "job") and "R@2kt/count" not in attrs
    assert (attrs["wandb_run_id"], attrs["wandb_run_name"]) == ("ab12cd34", "demo-evaluate-a0.01-n2")
    assert optuna.load_study(study_name="s", storage=storage).metric_names == ["R@2kt"]
    # a job whose overrides match no running trial is logged and skipped
    assert record_trial(storage, "s", ["augmentation.n=99"], tmp_path / "job", None) is None
    assert trial_attrs({"metrics": {}}) == {}


def test_user_attrs_in_one_transaction_equal_the_per_key_writes(tmp_path: Path) -> None:
    """The RDB fast path (one transaction) and the public per-key path (here: in-memory storage) store the same
    values, overwrite the same way, and refuse a finished trial alike."""
    from xqg.tasks.trial_attrs import set_user_attrs

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    attrs = {"R@2kt/ar": 40.0, "markers/R@2kt/ar": "↓†", "run_dir": "/x", "n": 3, "list": [1, 2]}
    got = []
    for storage in (f"sqlite:///{tmp_path}/o.db", optuna.storages.InMemoryStorage()):
        study = optuna.create_study(study_name="s", storage=storage)
        t = study.ask()
        set_user_attrs(study, t._trial_id, {**attrs, "R@2kt/ar": 1.0})
        set_user_attrs(study, t._trial_id, attrs)  # the second write wins
        got.append(study.trials[0].user_attrs)
        study.tell(t, 1.0)
        with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
            set_user_attrs(study, t._trial_id, attrs)
    assert got[0] == got[1] == attrs


def test_sweep_configs_compose_with_evaluate() -> None:
    from omegaconf import OmegaConf

    for name, sampler in [
        ("alpha_n", "TPESampler"),
        ("alpha_log_n", "TPESampler"),
        ("alpha_n_multi", "TPESampler"),
        ("grid_paper", "GridSampler"),
    ]:
        cfg = compose_config("evaluate", f"sweep={name}", hydra_config=True)
        sw = cfg.hydra.sweeper
        assert sw._target_.endswith("OptunaSweeper") and sw.sampler._target_.endswith(sampler)
        assert sw.storage.startswith("sqlite:///") and sw.storage.endswith("/optuna.db")
        assert set(sw.params) == {"augmentation.alpha", "augmentation.n"}
        assert "xqg_study_report" in cfg.hydra.callbacks
        assert sw.sampler.seed == cfg.seed == 42  # seeded sampler
        assert cfg.augmentation.enabled is True
        objective = OmegaConf.to_container(cfg.retrieval, resolve=False)["objective"]
        if name == "alpha_n_multi":
            assert objective == ["R@2kt", "R@5kt"] and list(sw.direction) == ["maximize", "maximize"]
        else:
            assert objective == "R@2kt" and sw.direction == "maximize"


TOY_APP = textwrap.dedent(
    """
    import hydra
    from omegaconf import DictConfig, OmegaConf
    from xqg.tasks.sweep import objective_value, write_trial_record

    @hydra.main(config_path="conf", config_name="toy")
    def main(cfg: DictConfig):
        a, n = float(cfg.augmentation.alpha), int(cfg.augmentation.n)
        per = {"ar": 40 + 300 * a - 3000 * a * a + n, "ja": 30 - 50 * a + 0.5 * n}
        metrics = {m: {**{k: v + off for k, v in per.items()}, "macro": sum(per.values()) / 2 + off}
                   for m, off in (("R@2kt", 0.0), ("R@5kt", 8.0))}
        value = objective_value(metrics, cfg.retrieval.objective)
        write_trial_record(hydra.core.hydra_config.HydraConfig.get().runtime.output_dir,
                           OmegaConf.to_container(cfg.augmentation, resolve=True), metrics, objective=value)
        return value

    if __name__ == "__main__":
        main()
    """
)
TOY_CONF = textwrap.dedent(
    """
    defaults:
      - _self_
      - augmentation: none
      - sweep: null
    seed: 7
    retrieval:
      objective: R@2kt
    generator:
      languages: [ar, bn, fi, ja, ko, ru, te]
      num_queries: 5
    logger: {}
    """
)


@pytest.fixture
def toy_app(tmp_path: Path) -> Path:
    app = tmp_path / "app"
    (app / "conf").mkdir(parents=True)
    (app / "toy.py").write_text(TOY_APP)
    (app / "conf" / "toy.yaml").write_text(TOY_CONF)
    (app / "conf" / "sweep").symlink_to(REPO / "sweeps")  # the real sweep definitions
    (app / "conf" / "augmentation").symlink_to(REPO / "conf" / "augmentation")
    return app


def _multirun(app: Path, *overrides: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, str(app / "toy.py"), "-m", *overrides],
        capture_output=True,
        text=True,
        cwd=app.parent,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _trials(db: Path) -> list[tuple[int, str]]:
    with sqlite3.connect(db) as con:
        return con.execute("select number, state from trials order by number").fetchall()


@pytest.mark.slow
def test_optuna_sweep_through_hydra_sqlite_and_resume(toy_app: Path, tmp_path: Path) -> None:
    d1, d2 = tmp_path / "sweep1", tmp_path / "sweep2"
    first = _multirun(toy_app, "sweep=alpha_n", "hydra.sweeper.n_trials=3", f"hydra.sweep.dir={d1}")
    assert _trials(d1 / "optuna.db") == [(0, "COMPLETE"), (1, "COMPLETE"), (2, "COMPLETE")]
    (name,) = optuna.get_all_study_names(f"sqlite:///{d1}/optuna.db")
    assert name.startswith("xqg-alpha_n-default-")  # unique per study: the storage's digest
    # the sweep ends by listing what it wrote; its figures are Optuna artifacts beside the storage
    listing = first.stdout[first.stdout.index("Files written by this sweep") :]
    assert str(d1 / "study" / "r2kt_alpha_n.pdf") in listing and str(d1 / "study" / "trials.csv") in listing
    assert "3 trial run folder(s)" in listing and f"--artifact-dir {d1 / 'artifacts'}" in listing
    assert "Files written by this sweep" in (d1 / "sweep.log").read_text()
    stored = len(list((d1 / "artifacts").iterdir()))
    assert stored >= 8 and f"({stored} Optuna artifacts" in listing
    recs = load_trial_records(d1)
    assert len(recs) == 3 and all(
        r["params"]["enabled"] and r["params"]["tune_split"] == "tune" for r in recs
    )
    assert all(0.0 <= r["params"]["alpha"] <= 0.1 and 1 <= r["params"]["n"] <= 5 for r in recs)
    summary = json.loads((d1 / "study" / "study_summary.json").read_text())
    best = max(recs, key=lambda r: r["objective"])
    assert summary["best_value"] == pytest.approx(best["objective"])
    assert summary["best_params"] == {
        "augmentation.alpha": best["params"]["alpha"],
        "augmentation.n": best["params"]["n"],
    }
    for png in (
        "optuna_importance",
        "optuna_slice",
        "optuna_history",
        "r2kt_vs_alpha",
        "r2kt_vs_n",
        "r5kt_vs_alpha",
        "r2kt_alpha_n",
    ):
        assert (d1 / "study" / f"{png}.png").read_bytes()[:4] == b"\x89PNG", png
    # resume: a second run on the same storage (new run folder) continues the study
    _multirun(
        toy_app,
        "sweep=alpha_n",
        "hydra.sweeper.n_trials=2",
        f"hydra.sweep.dir={d2}",
        f"hydra.sweeper.storage=sqlite:///{d1}/optuna.db",
    )
    assert len(_trials(d1 / "optuna.db")) == 5 and not (d2 / "optuna.db").exists()
    assert optuna.get_all_study_names(f"sqlite:///{d1}/optuna.db") == [name]  # the same study, resumed
    points = [
        tuple(t.params.values())
        for t in optuna.load_study(study_name=name, storage=f"sqlite:///{d1}/optuna.db").trials
    ]
    assert not set(points[3:]) & set(points[:3])  # the seeded sampler proposes new points, no replay
    s2 = json.loads((d2 / "study" / "study_summary.json").read_text())
    assert s2["trials"] == 5
    rows = list(csv.DictReader((d2 / "study" / "trials.csv").open()))
    assert len(rows) == 5 and "value_R@2kt" in rows[0]
    # every trial carries its per-language metrics and run folder in the study itself (trials.csv, dashboard)
    for row in rows:
        assert (
            float(row["R@2kt/ar"]) >= 0 and float(row["R@5kt/macro"]) >= 0 and Path(row["run_dir"]).is_dir()
        )


@pytest.mark.slow
def test_grid_sweep_reproduces_paper_style_figures(toy_app: Path, tmp_path: Path) -> None:
    d = tmp_path / "grid"
    _multirun(
        toy_app,
        "sweep=grid_paper",
        f"hydra.sweep.dir={d}",
        "augmentation.alpha=choice(0.0,0.01,0.05)",
        "augmentation.n=range(1,3)",
    )
    recs = load_trial_records(d)
    got = sorted((r["params"]["alpha"], r["params"]["n"]) for r in recs)
    assert got == [(a, n) for a in (0.0, 0.01, 0.05) for n in (1, 2)]
    assert all(r["params"]["tune_split"] is None for r in recs)
    summary = json.loads((d / "study" / "study_summary.json").read_text())
    assert summary["trials"] == 6 and summary["best_params"]["augmentation.n"] == 2
    assert (d / "study" / "r2kt_vs_n.png").exists() and (d / "study" / "table.md").exists()
    assert "+xQG (alpha=0.05, n=2)" in (d / "study" / "table.md").read_text()


def test_multi_objective_study_report(tmp_path: Path) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        directions=["maximize", "maximize"], sampler=optuna.samplers.RandomSampler(seed=0)
    )
    study.optimize(lambda t: (t.suggest_float("a", 0, 0.1), -t.suggest_int("n", 1, 5) * 1.0), n_trials=4)
    summary = write_study_report(study, tmp_path, objective_spec=["R@2kt", "R@5kt"])
    assert summary["objectives"] == ["R@2kt", "R@5kt"] and summary["pareto_front"]
    assert "best_params" not in summary
    for name in ("optuna_importance_0", "optuna_importance_1", "optuna_slice_0", "optuna_slice_1"):
        assert (tmp_path / f"{name}.png").exists(), name
    header = (tmp_path / "trials.csv").read_text().splitlines()[0]
    assert header.startswith("number,state,values_R@2kt,values_R@5kt,a,n")
    assert study.metric_names == ["R@2kt", "R@5kt"]  # the dashboard shows these, not "Objective 0"
