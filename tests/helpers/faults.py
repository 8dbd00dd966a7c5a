"""Fault injection without test hooks in production code: run a task in this process with one function
patched to kill the process (``os._exit``, no cleanup, like ``kill -9``) on its ``n + 1``-th call.

    python -m helpers.faults <module:attr | module:Class.method> <n> <task> <overrides...>

``task`` is ``retriever`` | ``generator`` (``train.py``), or ``evaluate`` (the evaluation pipeline); overrides
are Hydra overrides of ``conf/train.yaml`` / ``conf/evaluate.yaml``. Exit status :data:`KILLED` means the kill
point was reached; 0 means the task finished first.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
from typing import Any

KILLED = 86


def _resolve(target: str) -> tuple[Any, str]:
    module_name, _, attr = target.partition(":")
    owner: Any = importlib.import_module(module_name)
    *path, name = attr.split(".")
    for part in path:
        owner = getattr(owner, part)
    return owner, name


def patch_to_die(target: str, n: int) -> None:
    """Replace ``target`` so its ``n + 1``-th call exits the process at once (the first ``n`` run normally)."""
    owner, name = _resolve(target)
    original = getattr(owner, name)
    calls = [0]

    @functools.wraps(original)
    def dying(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] > n:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(KILLED)
        return original(*args, **kwargs)

    setattr(owner, name, dying)
    # modules that imported the function by name hold their own reference: patch those too
    for mod in list(sys.modules.values()):
        if mod is not None and mod is not owner and getattr(mod, name, None) is original:
            setattr(mod, name, dying)


def run_task(task: str, overrides: list[str]) -> Any:
    from helpers.config import settings

    if task == "retriever":
        from xqg.tasks.train_retriever import train_or_load

        return train_or_load(settings("train", "task=retriever", *overrides))
    if task == "generator":
        from xqg.tasks.train_generator import train_or_load as train_generator

        return train_generator(settings("train", "task=generator", *overrides))
    if task == "evaluate":
        from xqg.tasks.evaluate import run

        return run(settings("evaluate", *overrides))
    raise SystemExit(f"unknown task {task!r}")


def main(argv: list[str]) -> int:
    target, n, task, *overrides = argv
    import torch

    torch.set_num_threads(1)
    if target != "-":
        patch_to_die(target, int(n))
    run_task(task, overrides)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
