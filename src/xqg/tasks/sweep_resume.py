"""Resuming an Optuna sweep whose storage already holds trials (``hydra.sweeper.storage`` of a killed sweep).

Hydra's Optuna sweeper reloads the study (``load_if_exists``) but knows nothing of its past: a trial the kill
interrupted stays ``RUNNING`` forever, a grid sweep asks for ``n_trials`` more points (the grid sampler then
repeats finished ones), and a sampler seeded with ``${seed}`` restarts its random stream, so TPE proposes the
same points again. :func:`prepare_resume` runs in the sweep's Hydra callback before the sweeper is built (Hydra
calls ``on_multirun_start`` first) and fixes all three in the config and the storage:

* the study's ``RUNNING`` trials are marked ``FAIL`` (one log line each) and their parameters queued again, so
  the interrupted points run first. Each sweep process registers itself on the study (host, pid): while another
  one is alive on this host, its running trials are left alone. A worker on another host cannot be checked, so
  start extra workers on other hosts only after a resume has begun;
* a grid sweep runs only the grid points no finished trial has (plus the re-queued ones); its seed stays (it
  fixes which point each stored grid id names);
* any other seeded sampler's seed is offset by the number of trials already in the study, so it continues with
  new proposals instead of replaying the first ones.

It first names the study (:func:`name_study`): ``<study_name>-<experiment>-<storage digest>``, e.g.
``xqg-alpha_n-demo-3f9c2a1b``, so every study has its own name (and W&B group) and a resume, which points at the
same storage with the same experiment and sweep, reuses it. A name given on the command line, or one the storage
already holds (a study made before names were derived), is kept as it is.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna
from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl, create_params_from_overrides
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

log = logging.getLogger(__name__)

GRID_SAMPLER = "optuna.samplers.GridSampler"
WORKER = "xqg_sweep_worker"
STUDY_NAME = "study_name"
SQLITE = "sqlite:///"


def storage_digest(storage: str) -> str:
    """8 hex digits naming a storage; a SQLite file by its absolute path, however it was written."""
    s = str(storage)
    if s.startswith(SQLITE):
        s = SQLITE + str(Path(s[len(SQLITE) :]).expanduser().resolve())
    return hashlib.sha256(s.encode()).hexdigest()[:8]


def derived_study_name(base: str, experiment: str | None, storage: str) -> str:
    """``<base>-<experiment>-<storage digest>``: one name per study, the same on every resume."""
    return f"{base}-{experiment or 'default'}-{storage_digest(storage)}"


def name_study(config: DictConfig) -> str | None:
    """Set ``hydra.sweeper.study_name`` to :func:`derived_study_name` (see the module) and return the name the
    sweep uses; None without a storage or a name."""
    sweeper = config.hydra.sweeper
    storage, base = sweeper.get("storage"), sweeper.get(STUDY_NAME)
    if not storage or not base:
        return None
    given = any(str(o).startswith(f"hydra.sweeper.{STUDY_NAME}=") for o in config.hydra.overrides.task)
    if given or str(base) in optuna.get_all_study_names(str(storage)):
        return str(base)
    experiment = OmegaConf.select(config, "hydra.runtime.choices.experiment")
    name = derived_study_name(str(base), experiment, str(storage))
    _override(config, STUDY_NAME, name)
    return name


def _existing_study(storage: str, name: str) -> optuna.Study | None:
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:  # no such study yet: a fresh sweep
        return None


def _live_workers(study: optuna.Study) -> list[str]:
    """Sweep processes on this host registered on the study (:func:`register_worker`) that are still running."""
    host, alive = socket.gethostname(), []
    for key in study.user_attrs:
        kind, _, rest = key.partition(":")
        worker_host, _, pid = rest.rpartition(":")
        if kind != WORKER or worker_host != host or not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            continue
        except PermissionError:  # someone else's process: alive
            pass
        alive.append(pid)
    return alive


_REGISTERED: set[tuple[str, str]] = set()


def register_worker(study: optuna.Study) -> None:
    """Record this sweep process on the study (once), so a resume on this host can tell it is still running."""
    key = (str(study._storage), study.study_name)
    if key not in _REGISTERED:
        study.set_user_attr(f"{WORKER}:{socket.gethostname()}:{os.getpid()}", time.time())
        _REGISTERED.add(key)


def register_job(config: DictConfig) -> None:
    """At a job's start (the study exists by then, also on a first run): :func:`register_worker`."""
    sweeper = config.hydra.get("sweeper") or {}
    storage, name = sweeper.get("storage"), sweeper.get("study_name")
    study = _existing_study(str(storage), str(name)) if storage and name else None
    if study is not None:
        register_worker(study)


def fail_interrupted(study: optuna.Study) -> list[dict[str, Any]]:
    """Mark the study's ``RUNNING`` trials ``FAIL`` and queue their parameters again; returns those params.
    Nothing changes while another sweep process of this study runs on this host (its trials are not stale)."""
    requeued: list[dict[str, Any]] = []
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    alive = _live_workers(study) if running else []
    if alive:
        log.warning(
            "study %r: %d trial(s) RUNNING and sweep process(es) %s of it still running on this host: left alone",
            study.study_name,
            len(running),
            ", ".join(alive),
        )
        return requeued
    for t in running:
        study._storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)
        log.warning(
            "study %r: trial %d was interrupted (left RUNNING by a killed sweep): marked FAIL, its parameters %s "
            "queued again",
            study.study_name,
            t.number,
            t.params,
        )
        if t.params:
            study.enqueue_trial(dict(t.params), skip_if_exists=False)
            requeued.append(dict(t.params))
    return requeued


def grid_points(params: Mapping[str, Any], task_overrides: list[str]) -> list[dict[str, Any]]:
    """The grid the sweeper will search: its ``params`` plus sweep overrides from the command line, parsed as
    Hydra's Optuna sweeper parses them."""
    conf = [f"{k!s}={v}" for k, v in params.items()] + [str(o) for o in task_overrides]
    distributions, fixed, _ = create_params_from_overrides(conf)
    space = {
        name: list(OptunaSweeperImpl._to_grid_sampler_choices(d))
        for name, d in distributions.items()
        if name not in fixed
    }
    names = sorted(space)
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*(space[n] for n in names))]


def _key(params: Mapping[str, Any], names: list[str]) -> tuple[Any, ...]:
    return tuple(float(params[n]) if isinstance(params.get(n), int | float) else params.get(n) for n in names)


def remaining_grid(study: optuna.Study, grid: list[dict[str, Any]]) -> int:
    """Grid points that no finished trial has (finished: complete, pruned or failed, as Optuna's grid sampler
    counts them), plus the trials waiting in the queue."""
    if not grid:
        return 0
    names = sorted(grid[0])
    done = {
        _key(t.params, names)
        for t in study.get_trials(deepcopy=False)
        if t.state.is_finished() and all(n in t.params for n in names)
    }
    waiting = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)))
    return sum(_key(p, names) not in done for p in grid) + waiting


def _override(config: DictConfig, key: str, value: int | str) -> None:
    """Set ``hydra.sweeper.<key>`` as if it had been given on the command line: in the config the sweeper is built
    from and in the task overrides every job is composed with (Hydra refuses jobs whose ``hydra.sweeper``
    differs from the sweep's)."""
    with read_write(config.hydra), open_dict(config.hydra):  # Hydra hands callbacks a read-only config
        OmegaConf.update(config, f"hydra.sweeper.{key}", value, merge=False)
        config.hydra.overrides.task.append(f"hydra.sweeper.{key}={value}")


def prepare_resume(config: DictConfig) -> None:
    """Before the sweeper is built: name the study, clean up the stored study and adjust ``hydra.sweeper`` (see
    the module)."""
    name_study(config)
    sweeper = config.hydra.sweeper
    storage, name = sweeper.get("storage"), sweeper.get("study_name")
    if not storage or not name:
        return
    study = _existing_study(str(storage), str(name))
    if study is None:
        return
    fail_interrupted(study)
    register_worker(study)
    existing = len(study.get_trials(deepcopy=False))
    sampler = sweeper.get("sampler") or {}
    if str(sampler.get("_target_", "")) == GRID_SAMPLER:
        # the grid sampler's seed fixes which grid point each stored grid id names: it must not change
        params = OmegaConf.to_container(sweeper.get("params") or {}, resolve=False)
        overrides = [str(o) for o in config.hydra.overrides.task]
        left = remaining_grid(study, grid_points(params, overrides))  # type: ignore[arg-type]
        if left < int(sweeper.n_trials):
            log.info(
                "study %r: %d of the grid's points are still to run (n_trials %d -> %d)",
                name,
                left,
                sweeper.n_trials,
                left,
            )
            _override(config, "n_trials", left)
        return
    seed = sampler.get("seed") if sampler else None
    if seed is not None and existing:
        log.info(
            "study %r has %d trials: sampler seed %s -> %s (new proposals, not a replay)",
            name,
            existing,
            seed,
            int(seed) + existing,
        )
        _override(config, "sampler.seed", int(seed) + existing)
