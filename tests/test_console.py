"""The quiet console: known third-party notices filtered, tables copied into the log file, step-based bars."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest

from helpers.config import SMALL_DEV, few_steps
from xqg.tasks.console import LIGHTNING_INFO, StepProgressBar, log_to_files, quiet_third_party

REPO = Path(__file__).resolve().parents[1]


def test_known_third_party_notices_are_filtered_and_others_are_not(caplog: pytest.LogCaptureFixture) -> None:
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        quiet_third_party()
        quiet_third_party()  # idempotent
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use ...", FutureWarning, stacklevel=1)
        warnings.warn(
            "Total length of `list` across ranks is zero. Please make sure ...", UserWarning, stacklevel=1
        )
        warnings.warn("something about this run", UserWarning, stacklevel=1)
    assert [str(w.message) for w in seen] == ["something about this run"]
    with caplog.at_level(logging.INFO, logger=LIGHTNING_INFO):
        logging.getLogger(LIGHTNING_INFO).info("💡 Tip: ... try installing [litlogger](https://pypi.org/...)")
        logging.getLogger(LIGHTNING_INFO).info("GPU available: False")
    assert [r.getMessage() for r in caplog.records] == ["GPU available: False"]


def test_log_to_files_reaches_file_handlers_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    logger = logging.getLogger("xqg.test_console")
    file_handler = logging.FileHandler(tmp_path / "job.log")
    console = logging.StreamHandler()
    logger.addHandler(file_handler)
    logger.addHandler(console)
    try:
        log_to_files("System  Metric  ar\nxDR     R@2kt   40.00", logger)
    finally:
        logger.removeHandler(file_handler)
        logger.removeHandler(console)
        file_handler.close()
    assert (tmp_path / "job.log").read_text() == "System  Metric  ar\nxDR     R@2kt   40.00\n"
    assert capsys.readouterr().err == ""


def test_step_bounded_training_shows_steps() -> None:
    bar = StepProgressBar()
    bar._trainer = SimpleNamespace(max_epochs=-1, max_steps=2000, global_step=372)  # type: ignore[assignment]
    assert bar._get_train_description(6) == "step 372/2000"
    bar._trainer = SimpleNamespace(max_epochs=3, max_steps=-1, global_step=5)  # type: ignore[assignment]
    assert bar._get_train_description(1).strip() == "Epoch 1/2"


# The README's main job (`evaluate.py -m experiment=demo sweep=demo`) made small: a 40-entity world, a few training
# steps, a 2 x 2 grid tuned on the `tune` questions (so the best setting is scored on `report` too), W&B on
# (offline), as a user runs it.
MAIN_JOB = [
    "-m",
    "experiment=demo",
    "sweep=demo",
    "data.world.n_entities=40",
    "data.world.passages_per_entity=2",
    *few_steps(),
    *SMALL_DEV,
    "generator.train.val_every_steps=1",
    "generator.num_queries=2",
    "generator.max_source_length=64",
    "generator.decoding.max_new_tokens=8",
    "retrieval.passage_batch_size=64",
    "metrics.workers=1",
    "augmentation.tune_split=tune",
    "augmentation.alpha=choice(0.01,0.5)",
    "augmentation.n=choice(1,2)",
    "hydra.sweeper.n_trials=4",
]
THIRD_PARTY = re.compile(r"\w+Warning\b|warnings\.warn|litlogger|anonymous|LeafSpec|across ranks is zero")


@pytest.mark.slow
def test_main_job_console_is_quiet_labelled_and_complete(shared_data: Path, tmp_path: Path) -> None:
    env = {**os.environ, "WANDB_MODE": "offline", "XQG_SHARED_DATA": str(shared_data), "TQDM_DISABLE": "1"}
    proc = subprocess.run(
        [sys.executable, str(REPO / "evaluate.py"), *MAIN_JOB, f"paths.root_dir={tmp_path}"],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
        env=env,
    )
    out, lines = proc.stdout, (proc.stdout + proc.stderr).splitlines()
    assert proc.returncode == 0, proc.stderr[-3000:]
    # W&B ran (offline) but printed nothing of its own: no banners, no sparkline history blocks
    assert not [x for x in lines if x.startswith("wandb:") or "Run history" in x], proc.stderr[-3000:]
    assert not [x for x in lines if THIRD_PARTY.search(x)], proc.stderr[-3000:]
    # each trial's table is headed by its experiment (two sweeps may share a console: `make -j2 demo`), trial
    # number and setting; the study's answer (named) on `tune`, then `report`
    labels = re.findall(r"^demo trial (\d) \(alpha=(0\.01|0\.5), n=([12]), tune questions\):$", out, re.M)
    assert {t for t, _, _ in labels} == {"0", "1", "2", "3"}
    assert {(a, n) for _, a, n in labels} == {("0.01", "1"), ("0.01", "2"), ("0.5", "1"), ("0.5", "2")}
    assert re.search(r"^Best xQG setting.* on the tune questions \(study xqg-demo-demo-\w+, ", out, re.M)
    report = out.index("scored on the report questions, held out from tuning")
    assert "R@2kt" in out[report:] and out.index("Files written by this sweep") > report
    (sweep,) = (tmp_path / "outputs" / "evaluate" / "multiruns").iterdir()
    assert (
        json.loads((sweep / "study" / "report" / "results.json").read_text())["augmentation"]["tune_split"]
        == "report"
    )
    logged = (sweep / "sweep.log").read_text()  # the sweep's end is in its own log file too
    assert (
        logged.index("Best xQG setting")
        < logged.index("held out from tuning")
        < logged.index("Files written")
    )
    tuned, reported = logged.split("held out from tuning", 1)
    assert "| xDR | R@2kt |" in tuned and "xDR     R@2kt" in reported  # the tune table, then the report one
    for name in ("table.tex", "r2kt_alpha_n.pdf", "optuna_history.png"):
        assert str(sweep / "study" / name) in out[out.index("Files written by this sweep") :], name
    # every trial's W&B run id is on its Optuna trial; the runs are stored offline in the run folder
    (study_name,) = optuna.get_all_study_names(f"sqlite:///{sweep}/optuna.db")
    trials = optuna.load_study(study_name=study_name, storage=f"sqlite:///{sweep}/optuna.db").trials
    runs = {
        p.name.rsplit("-", 1)[1] for p in (tmp_path / "outputs" / "wandb" / "wandb").glob("offline-run-*")
    }
    assert len(trials) == 4 and all(t.user_attrs["wandb_run_id"] in runs for t in trials)
    assert len(runs) == 4 + 2 + 2  # the trials, the two trainings, the report-split run and the study run
