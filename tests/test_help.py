"""``--help`` of both entry points: what the program does, its config groups and example commands that work."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

import pytest
import yaml

from helpers.config import compose_config
from helpers.paths import REPO

PROGRAMS = ("train", "evaluate")


def examples(name: str) -> list[list[str]]:
    """The example commands of ``conf/hydra/help/<name>.yaml`` as argument lists (comments dropped, continued
    lines joined, ``<placeholder>`` kept)."""
    template = yaml.safe_load((REPO / "conf" / "hydra" / "help" / f"{name}.yaml").read_text())["template"]
    block = template.split("== Examples ==", 1)[1].split("== Flags ==", 1)[0]
    block = re.sub(r"\\\n\s*", "", block)
    commands = []
    for line in block.splitlines():
        line = line.split(" #", 1)[0].strip()
        if line.startswith("python "):
            commands.append(shlex.split(line.replace("<", "'<").replace(">", ">'")))
    return commands


@pytest.mark.parametrize("name", PROGRAMS)
def test_every_example_composes(name: str) -> None:
    commands = examples(name)
    assert 5 <= len(commands) <= 10 and all(c[1] == f"{name}.py" for c in commands)
    for command in commands:
        args = command[2 : command.index("--cfg")] if "--cfg" in command else command[2:]
        overrides = [a.replace("<", "x").replace(">", "") for a in args if not a.startswith("-")]
        cfg = compose_config(name, *overrides, hydra_config=True)
        assert cfg.hydra.help.app_name == f"{name}.py", command
        if "-m" in command:
            assert "xqg_study_report" in cfg.hydra.callbacks, command  # a sweep with its study report


@pytest.mark.slow
def test_train_help_says_what_it_does_with_groups_and_examples() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "train.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env={**os.environ, "WANDB_MODE": "disabled"},
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.startswith("train.py: train the retriever (xDR")
    assert "\nexperiment: demo" in out and "\ntrainer: cpu, ddp, gpu" in out  # the groups and their options
    assert out.count("\n  python train.py ") == len(examples("train"))
    assert "--cfg job" in out and "Powered by Hydra" not in out and "$" not in out
    assert len(out.splitlines()) < 70 and not proc.stderr.strip()


@pytest.mark.parametrize("name", PROGRAMS)
def test_worker_processes_import_nothing_from_the_entry_script(name: str) -> None:
    """multiprocessing's forkserver and spawn workers (the scorer's tokenisers) re-run the main script as
    ``__mp_main__``; the pipeline's imports there cost about 12 s of the main job."""
    code = (
        "import runpy, sys; runpy.run_path(sys.argv[1], run_name='__mp_main__'); "
        "print(sorted(m for m in ('torch', 'hydra', 'xqg.tasks') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(REPO / f"{name}.py")], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
