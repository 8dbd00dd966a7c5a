"""Worker processes that end when the run that started them ends, even when it is killed with ``kill -9``.

A pool worker blocked on its task queue never notices that its parent is gone (it holds both ends of the queue's
pipe), so a killed run would leave it behind as an orphan. :func:`end_with_parent`, called in the worker's
initializer, arranges two independent ways out:

- Linux: ``prctl(PR_SET_PDEATHSIG, SIGKILL)``: the kernel kills the worker when its parent dies. With the
  ``forkserver`` start method the parent is the fork server, which exits as soon as the run that started it dies.
- Everywhere: a daemon thread that checks twice a second whether the worker's parent changed (it was re-parented:
  the parent died) or the run's process is gone (or a zombie), and then ends the worker.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_POLL_S = 0.5
_THREAD = "xqg-end-with-parent"


def end_with_parent(run_pid: int) -> None:
    """Make this (worker) process end when its parent or the run ``run_pid`` dies; idempotent per process."""
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        _set_parent_death_signal()
    if _gone(parent, run_pid):  # the parent died before the death signal was armed
        os._exit(1)
    if not any(t.name == _THREAD for t in threading.enumerate()):
        threading.Thread(target=_watch, args=(parent, run_pid), name=_THREAD, daemon=True).start()


def _set_parent_death_signal() -> None:
    with contextlib.suppress(OSError, AttributeError):  # no usable libc: the watchdog thread still applies
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)


def _watch(parent: int, run_pid: int) -> None:
    while not _gone(parent, run_pid):
        time.sleep(_POLL_S)
    os._exit(1)


def _gone(parent: int, run_pid: int) -> bool:
    return os.getppid() != parent or not pid_alive(run_pid)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (a killed process its own parent has not reaped yet)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):  # no /proc (not Linux): kill(pid, 0) is all there is
        return True
