"""Packaging: the lock file CI installs with pins every dependency the extras name, inside pyproject's ranges;
every Hydra plugin is on hydra-core's release line; the example SLURM launcher config composes."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from helpers.config import compose_config

REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / "constraints-lock.txt"
# extras a CPU machine installs (gpu: faiss-gpu has no CPU wheel; it replaces faiss-cpu on GPU machines)
LOCKED_EXTRAS = ("cpu", "dev", "slurm", "dashboard", "ir")


def _project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _lock() -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for lineno, raw in enumerate(LOCK.read_text().splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        spec = list(req.specifier)
        assert len(spec) == 1 and spec[0].operator == "==", f"{LOCK.name}:{lineno}: not an exact pin: {raw!r}"
        name = canonicalize_name(req.name)
        assert name not in pins, f"{LOCK.name}:{lineno}: {name} pinned twice"
        pins[name] = Version(spec[0].version)
    return pins


def test_lock_pins_every_dependency_within_pyproject_ranges():
    pins = _lock()
    assert "xqg" not in pins  # the project itself is installed from the tree, never pinned
    assert pins["torch"] == Version("2.13.0")
    project = _project()
    reqs = [Requirement(r) for r in project["dependencies"]]
    reqs += [Requirement(r) for extra in LOCKED_EXTRAS for r in project["optional-dependencies"][extra]]
    for req in reqs:
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not pinned in {LOCK.name}"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"{LOCK.name} pins {name}=={pins[name]}: {req}"
        )


def test_hydra_plugins_share_the_core_release_line_and_omegaconf_is_pinned():
    project = _project()
    every = project["dependencies"] + [r for rs in project["optional-dependencies"].values() for r in rs]
    reqs = {canonicalize_name(Requirement(r).name): Requirement(r) for r in every}
    core = reqs["hydra-core"]
    plugins = {n: r for n, r in reqs.items() if n.startswith("hydra-") and n != "hydra-core"}
    assert {"hydra-optuna-sweeper", "hydra-joblib-launcher", "hydra-submitit-launcher"} <= set(plugins)
    for name, req in plugins.items():
        assert str(req.specifier) == str(core.specifier), (
            f"{name} {req.specifier} vs hydra-core {core.specifier}"
        )
    assert str(reqs["omegaconf"].specifier).startswith("==")
    pins = _lock()
    assert {pins[n] for n in [*plugins, "hydra-core"]} == {pins["hydra-core"]}
    ci = (REPO / ".ci" / "run").read_text()
    assert "-c constraints-lock.txt" in ci


def test_slurm_launcher_config_composes():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="pip install -e '.[slurm]'")
    cfg = compose_config(
        "evaluate", "hydra/launcher=slurm", "hydra.launcher.partition=gpu", hydra_config=True
    )
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (launcher.partition, launcher.gpus_per_node, launcher.timeout_min) == ("gpu", 1, 240)
