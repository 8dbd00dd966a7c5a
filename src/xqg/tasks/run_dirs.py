"""Run folders that two jobs never share, even when they start in the same second.

Hydra names run folders by ``${now:...}`` alone, so jobs started together (a job array, two terminals) wrote
into one folder: one's overrides next to the other's results. ``conf/hydra/default.yaml`` appends
``${xqg_run_id:}``: this process's id and a random part, fixed for the life of the process (every reference to
the run folder in one process names the same folder).
"""

from __future__ import annotations

import os
import secrets

from omegaconf import OmegaConf

RESOLVER = "xqg_run_id"
_IDS: dict[int, str] = {}


def run_id() -> str:
    """``<pid>-<4 random hex digits>``, one per process (a forked child gets its own)."""
    pid = os.getpid()
    return _IDS.setdefault(pid, f"{pid}-{secrets.token_hex(2)}")


def register_run_id_resolver() -> None:
    """Make ``${xqg_run_id:}`` available to configs; idempotent."""
    if not OmegaConf.has_resolver(RESOLVER):
        OmegaConf.register_resolver(RESOLVER, run_id)
