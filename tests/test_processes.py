"""Processes: no tokenisation worker survives a ``kill -9`` of its run; two runs never share a run folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
import yaml

from helpers.config import compose_config
from helpers.paths import REPO
from xqg.core.workers import _gone, pid_alive
from xqg.tasks.run_dirs import run_id

# A run that tokenises with two worker processes (forkserver) until it is killed; "ready" once they have worked.
_TOKENISING_RUN = textwrap.dedent(
    """
    from xqg.evaluation.token_cache import ParallelTokenizer

    texts = ["Where was the first xQG paper presented, and by whom? It was SIGIR 2023."] * 1024
    with ParallelTokenizer(cap=64, workers=2) as tokenise:
        tokenise(texts)
        print("ready", flush=True)
        while True:
            tokenise(texts)
    """
)


def _ended(p: psutil.Process) -> bool:
    try:
        return not p.is_running() or p.status() == psutil.STATUS_ZOMBIE  # a zombie runs nothing
    except psutil.NoSuchProcess:
        return True


@pytest.mark.slow
def test_no_tokenisation_worker_survives_kill_9_of_its_run() -> None:
    run = subprocess.Popen([sys.executable, "-c", _TOKENISING_RUN], stdout=subprocess.PIPE, text=True)
    try:
        assert run.stdout is not None and run.stdout.readline().strip() == "ready"
        descendants = psutil.Process(run.pid).children(recursive=True)
        workers = [p for p in descendants if p.ppid() != run.pid]  # forked by the fork server, not by the run
        assert len(workers) >= 2, [p.cmdline() for p in descendants]
    finally:
        os.kill(run.pid, signal.SIGKILL)
        run.wait(timeout=30)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not all(map(_ended, descendants)):
        time.sleep(0.2)
    survivors = [(p.pid, p.cmdline()) for p in descendants if not _ended(p)]
    assert not survivors, f"orphans after kill -9 of the run: {survivors}"


def test_a_dead_or_zombie_process_counts_as_gone() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert pid_alive(child.pid) and not _gone(os.getppid(), child.pid)
        child.kill()
        deadline = time.monotonic() + 10
        while pid_alive(child.pid) and time.monotonic() < deadline:  # killed, not reaped yet: a zombie
            time.sleep(0.05)
        assert not pid_alive(child.pid) and _gone(os.getppid(), child.pid)
    finally:
        child.kill()
        child.wait()
    assert not pid_alive(child.pid)
    assert _gone(os.getppid() + 1, os.getpid())  # re-parented: the parent died


def test_run_folders_carry_a_per_process_id() -> None:
    cfg = compose_config("evaluate", hydra_config=True)
    assert cfg.hydra.run.dir.endswith(f"_{run_id()}") and cfg.hydra.sweep.dir.endswith(f"_{run_id()}")
    assert run_id() == run_id() and run_id().startswith(f"{os.getpid()}-")
    other = subprocess.run(
        [sys.executable, "-c", "from xqg.tasks.run_dirs import run_id; print(run_id())"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert other.stdout.strip() != run_id()


@pytest.mark.slow
def test_two_runs_started_in_the_same_second_get_their_own_folders(tmp_path: Path) -> None:
    # The time part of conf/hydra/default.yaml's run folder pinned to one value: "the same second", for sure.
    same_second = "hydra.run.dir=${paths.log_dir}/${task_name}/runs/2026-01-01_00-00-00_${xqg_run_id:}"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    runs = [
        subprocess.Popen(
            [
                sys.executable,
                str(REPO / "train.py"),
                "task=unknown",
                f"seed={seed}",
                same_second,
                f"paths.log_dir={tmp_path}",
            ],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for seed in (1, 2)
    ]
    assert [r.wait(timeout=300) for r in runs] == [2, 2]  # an unknown task: refused after the folder is made
    folders = sorted((tmp_path / "train" / "runs").iterdir())
    assert len(folders) == 2 and all(f.name.startswith("2026-01-01_00-00-00_") for f in folders)
    seeds = sorted(
        next(
            o for o in yaml.safe_load((f / ".hydra" / "overrides.yaml").read_text()) if o.startswith("seed=")
        )
        for f in folders
    )
    assert seeds == ["seed=1", "seed=2"]  # each folder holds its own run's overrides
