"""The honest number of a study that tuned on the ``tune`` questions: its best setting scored on the ``report``
questions (``augmentation.tune_split``, :mod:`xqg.evaluation.splits`), at the end of the sweep.

A study that picks alpha and n on the questions it then reports on overstates the gain. The sweeps in
``sweeps/`` tune on ``tune``; :func:`rescore_best` (called by the study-report callback after the study's own
table) composes the sweep's job config with the best parameters and ``augmentation.tune_split=report`` and runs
the evaluation once more in this process, into ``<sweep dir>/study/report/``. Everything but the search over the
other half of the questions comes from the cache, so this costs about one trial. Its table follows the tune
table on the console, so both are printed.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from xqg.core.errors import MissingResourceError, XqgInputError
from xqg.tasks import evaluate as evaluate_task
from xqg.tasks.console import log_to_files
from xqg.tasks.schema import to_settings

log = logging.getLogger(__name__)
TUNE, REPORT = "tune", "report"
SPLIT_KEY = "augmentation.tune_split"


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def report_overrides(task_overrides: list[str], best: Mapping[str, Any], out_dir: Path) -> list[str]:
    """The sweep's task overrides with the searched keys fixed to ``best``, the ``report`` questions and the
    output folder (what a job of this sweep would get, scoring the held-out half)."""
    fixed = {*best, SPLIT_KEY, "paths.output_dir"}
    kept = [o for o in task_overrides if _key(o) not in fixed]
    return [
        *kept,
        *(f"{k}={v}" for k, v in best.items()),
        f"{SPLIT_KEY}={REPORT}",
        f"paths.output_dir={out_dir}",
    ]


def wants_rescore(config: DictConfig, best: Mapping[str, Any] | None) -> bool:
    """An ``evaluate.py`` sweep that tuned on ``tune`` and has one best setting (not a Pareto front)."""
    return (
        bool(best)
        and OmegaConf.select(config, "task_name") == "evaluate"
        and OmegaConf.select(config, SPLIT_KEY) == TUNE
        and not OmegaConf.select(config, "score.predictions")
        and not OmegaConf.select(config, "score.run")
    )


def rescore_best(config: DictConfig, best: Mapping[str, Any] | None, out_dir: str | Path) -> float | None:
    """Score ``best`` on the ``report`` questions (see the module) and return its objective; None when the
    study does not call for it. A bad input or a missing resource is logged, never fatal: the study's own
    report is already written."""
    if not wants_rescore(config, best) or not GlobalHydra.instance().is_initialized():
        return None
    assert best is not None
    out = Path(out_dir)
    overrides = report_overrides([str(o) for o in config.hydra.overrides.task], best, out)
    loader = GlobalHydra.instance().config_loader()
    job = loader.load_sweep_config(config, overrides)
    with read_write(job), open_dict(job):
        job.hydra.mode = RunMode.RUN
        job.hydra.runtime.output_dir = str(out)
    setting = ", ".join(f"{k.removeprefix('augmentation.')}={v}" for k, v in best.items())
    heading = f"Best setting ({setting}) scored on the {REPORT} questions, held out from tuning ({out}):"
    print("\n" + heading)
    log_to_files(heading)
    task = copy.deepcopy(job)  # the job's config without the hydra node, as Hydra hands it to a task
    with read_write(task), open_dict(task):
        del task["hydra"]
    before = HydraConfig.instance().cfg
    HydraConfig.instance().set_config(job)
    try:
        return evaluate_task.run(to_settings(task))  # type: ignore[return-value]
    except (XqgInputError, MissingResourceError, OSError) as e:
        log.warning("the best setting could not be scored on the %s questions: %s", REPORT, e)
        return None
    finally:
        if before is not None:
            HydraConfig.instance().cfg = before
