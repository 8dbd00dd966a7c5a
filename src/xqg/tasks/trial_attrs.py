"""Every metric of a sweep trial in the Optuna study itself, so optuna-dashboard and ``trials.csv`` show them.

Hydra's Optuna sweeper hands Optuna only the value(s) a job returns. After each job the study-report callback
(:class:`xqg.tasks.study_report.StudyReportCallback`, ``on_job_end``, in the job's process) reads the job's
``trial.json`` and writes onto its trial, through the study storage: per-language and macro R@kt for every k
(``R@2kt/ar``), the baseline's (``baseline/R@2kt/ar``), the significance markers vs alpha = 0
(``markers/R@2kt/ar``), the run folder (``run_dir``) and the job's W&B run (``wandb_run_id``, ``wandb_run_name``,
``wandb_dir``); and it names the objectives (``set_metric_names``), so the dashboard shows ``R@2kt`` instead of
"Objective 0". :func:`job_trial_number` tells a running job which trial it is (for its console table's label).
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import ExperimentalWarning

from xqg.tasks.sweep import TRIAL_RECORD

log = logging.getLogger(__name__)
RUN_DIR = "run_dir"
WANDB_ATTRS = {"id": "wandb_run_id", "name": "wandb_run_name", "dir": "wandb_dir"}


def trial_attrs(record: Mapping[str, Any], run_dir: str | Path | None = None) -> dict[str, Any]:
    """The flat user attributes of one trial record (:func:`xqg.tasks.sweep.write_trial_record`)."""
    out: dict[str, Any] = {}
    for prefix, block in (("", record.get("metrics")), ("baseline/", record.get("baseline"))):
        for metric, per in (block or {}).items():
            if isinstance(per, Mapping):
                out.update(
                    {f"{prefix}{metric}/{k}": float(v) for k, v in per.items() if isinstance(v, int | float)}
                )
    for metric, per in (record.get("markers") or {}).items():
        out.update({f"markers/{metric}/{k}": str(v) for k, v in per.items() if v})
    for key, attr in WANDB_ATTRS.items():
        value = (record.get("wandb") or {}).get(key)
        if value:
            out[attr] = str(value)
    if run_dir is not None:
        out[RUN_DIR] = str(run_dir)
    return out


def find_trial(study: optuna.Study, overrides: Iterable[str]) -> optuna.trial.FrozenTrial | None:
    """The running trial whose parameters are this job's overrides (the sweeper passes ``name=value`` with
    ``str(value)``); the lowest-numbered one without a run folder when a batch holds the same point twice."""
    given = set(overrides)
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    for t in sorted(running, key=lambda t: t.number):
        if RUN_DIR not in t.user_attrs and all(f"{k}={v}" in given for k, v in t.params.items()):
            return t
    return None


def job_trial_number(storage: str | None, study_name: str | None, overrides: Iterable[str]) -> int | None:
    """The number of the running trial a sweep job with these overrides runs (:func:`find_trial`); None outside
    a study or when the storage cannot tell (never fatal: it only labels the job's console output)."""
    if not storage or not study_name:
        return None
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except (KeyError, ValueError, RuntimeError) as e:  # no such study / storage: no label
        log.debug("no trial number for this job: %s", e)
        return None
    trial = find_trial(study, overrides)
    return None if trial is None else trial.number


def set_metric_names(study: optuna.Study, names: list[str]) -> None:
    """Name the objectives once (a no-op when they already carry these names or the count differs)."""
    if len(names) != len(study.directions) or study.metric_names == names:
        return
    with warnings.catch_warnings():
        # set_metric_names is marked experimental since Optuna 3.2; its storage format has not changed since
        warnings.simplefilter("ignore", ExperimentalWarning)
        study.set_metric_names(names)


def record_trial(
    storage: str, study_name: str, overrides: Iterable[str], run_dir: str | Path, names: list[str] | None
) -> int | None:
    """Copy ``<run_dir>/trial.json`` onto the job's trial; returns the trial number (None when the job left no
    record or its trial cannot be found, which is logged, never fatal: the sweep's result does not depend on it)."""
    path = Path(run_dir) / TRIAL_RECORD
    if not path.exists():
        return None
    study = optuna.load_study(study_name=study_name, storage=storage)
    if names:
        set_metric_names(study, names)
    trial = find_trial(study, overrides)
    if trial is None:
        log.warning("no running Optuna trial matches %s; its metrics stay in %s only", run_dir, path)
        return None
    set_user_attrs(study, trial._trial_id, trial_attrs(json.loads(path.read_text()), run_dir))
    return trial.number


def set_user_attrs(study: optuna.Study, trial_id: int, attrs: Mapping[str, Any]) -> None:
    """Write ``attrs`` onto a trial: in one transaction where the storage is Optuna's RDB storage (its own
    per-attribute write commits each of a trial's ~125 attributes: 0.98 s a trial on SQLite here, 0.27 s as one
    transaction; Optuna's cache in front of it passes these writes straight through, as here), else one
    ``set_trial_user_attr`` per key."""
    storage = study._storage
    backend = getattr(storage, "_backend", storage)
    try:
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import RDBStorage, _create_scoped_session

        batch = isinstance(backend, RDBStorage) and hasattr(backend, "_set_trial_attr_without_commit")
    except ImportError:  # another Optuna layout: the public path below
        batch = False
    if not batch:
        for key, value in attrs.items():
            storage.set_trial_user_attr(trial_id, key, value)
        return
    with _create_scoped_session(backend.scoped_session, True) as session:
        for key, value in attrs.items():
            backend._set_trial_attr_without_commit(
                session, models.TrialUserAttributeModel, trial_id, key, value
            )
