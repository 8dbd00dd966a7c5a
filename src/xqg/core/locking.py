"""Advisory build locks: two runs on one cache never compute the same artifact twice.

A stage that finds its artifact incomplete calls :func:`complete_or_claim` instead of building at once. It takes
the artifact's lock, ``<cache>/<kind>/<fingerprint>.lock`` (``filelock``: ``flock`` where the file system has it),
waiting with one log line while another run holds it, and returns True as soon as the other run's artifact is
complete (reuse it) or False once this run holds the lock (build it). The lock is released, and its file removed,
when the artifact is finalized (:meth:`xqg.core.artifacts.ArtifactDir.finalize`), when a staged build ends
(:func:`xqg.core.staging.staged_artifact`), when the job ends (:func:`release_every_lock`, successful or not), at
interpreter exit, or by the OS when the process dies (``kill -9`` included: a left-over lock file is then free to
take). Reading a complete artifact takes no lock, so complete
read-only caches keep working. In a distributed job only rank 0 locks: the other ranks build their share under it.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import threading
from pathlib import Path
from typing import Protocol

from filelock import FileLock, Timeout

log = logging.getLogger(__name__)

LOCK_SUFFIX = ".lock"
_POLL_S = 1.0  # how often a waiting run looks for the other run's finished artifact
_RANK_VARS = ("RANK", "LOCAL_RANK", "NODE_RANK")  # set by torchrun and by Lightning's DDP launcher
_HELD: dict[str, FileLock] = {}  # lock path -> the lock this process holds
_GUARD = threading.Lock()


class ArtifactDir(Protocol):
    """What a lock needs of :class:`xqg.core.artifacts.ArtifactDir` (which imports this module)."""

    path: Path
    kind: str
    fingerprint: str

    @property
    def complete(self) -> bool: ...


def lock_path(art: ArtifactDir, share: str = "") -> Path:
    """Where ``art``'s build lock lives; ``share`` names one worker's part of a build split between workers."""
    return art.path.parent / f"{art.fingerprint}{'.' + share if share else ''}{LOCK_SUFFIX}"


def complete_or_claim(art: ArtifactDir, share: str = "") -> bool:
    """True when ``art`` is complete (reuse it); otherwise take its build lock and return False (build it).

    While another run holds the lock this waits, logging ``waiting for another run to finish <kind>/<fp>``
    once, and returns True as soon as that run's artifact is complete. Taking a lock this thread already holds
    returns at once (a stage that re-enters its own build).
    """
    if art.complete:
        return True
    if _distributed_worker():
        return False
    path = lock_path(art, share)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _GUARD:
        lock = _HELD.get(str(path)) or FileLock(path)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.info("waiting for another run to finish %s/%s (lock %s)", art.kind, art.fingerprint, path)
        while True:
            if art.complete:
                return True
            try:
                lock.acquire(timeout=_POLL_S)
                break
            except Timeout:
                continue
    with _GUARD:
        _HELD[str(path)] = lock
    if art.complete:  # finished by the run this one waited for
        release(art, share)
        return True
    log.info("building %s/%s", art.kind, art.fingerprint)
    return False


def release(art: ArtifactDir, share: str = "") -> None:
    """Give up ``art``'s build lock (and remove its file) if this process holds it; otherwise nothing."""
    _release(str(lock_path(art, share)))


def release_all(art: ArtifactDir) -> None:
    """Every build lock of ``art`` this process holds, the workers' shares included."""
    prefix = str(lock_path(art))[: -len(LOCK_SUFFIX)]
    with _GUARD:
        paths = [p for p in _HELD if p.startswith(prefix)]
    for p in paths:
        _release(p)


def _release(path: str) -> None:
    with _GUARD:
        lock = _HELD.pop(path, None)
    if lock is None or not lock.is_locked:
        return
    with contextlib.suppress(OSError):  # removed while held, so a waiter on the old file takes a fresh one
        os.unlink(path)
    lock.release(force=True)


def release_every_lock() -> None:
    """Every build lock this process holds: at the end of a job (``train.py``/``evaluate.py``, each sweep trial),
    so a build that failed never keeps other runs waiting while this process goes on."""
    for p in list(_HELD):
        _release(p)


def _distributed_worker() -> bool:
    """A rank other than 0 of a distributed job (it builds under rank 0's lock; locking would deadlock)."""
    for var in _RANK_VARS:
        with contextlib.suppress(ValueError):
            if int(os.environ.get(var) or 0) > 0:
                return True
    return False


atexit.register(release_every_lock)
