"""Garbage-collector settings for the entry scripts' processes.

The pipeline's imports (torch, lightning with torch._dynamo and sympy, transformers, nltk with scipy) leave about
half a million long-lived objects, and their import creates about a million: the collector's full passes walk
them again and again while importing, during the run, and twice more while the interpreter exits. Measured on 2
CPU cores: the imports take about 2 s less with the collector off, and an exit 0.5 s instead of 2.5-4 s.
"""

from __future__ import annotations

import atexit
import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def long_lived_imports() -> Iterator[None]:
    """Import the pipeline with the collector off; then collect once, freeze what survived (never walked again,
    still freed by reference counting) and turn the collector back on. Also freezes at exit, after every other
    exit handler (W&B's, logging's: this one is registered before theirs), so the interpreter's final passes skip
    what the run made."""
    atexit.register(gc.freeze)
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.collect()
        gc.freeze()
        if enabled:
            gc.enable()
