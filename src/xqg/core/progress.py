"""Progress bars that stay quiet in CI logs and tests unless asked for."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress_enabled() -> bool:
    """On for interactive terminals; ``XQG_PROGRESS=1/0`` forces it."""
    env = os.environ.get("XQG_PROGRESS")
    if env is not None:
        return env not in ("0", "false", "no", "")
    return sys.stderr.isatty()


def progress(iterable: Iterable[T], **kwargs: Any) -> Iterator[T]:
    kwargs.setdefault("disable", not progress_enabled())
    kwargs.setdefault("dynamic_ncols", True)
    return iter(tqdm(iterable, **kwargs))


def progress_bar(**kwargs: Any) -> tqdm:
    kwargs.setdefault("disable", not progress_enabled())
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(**kwargs)
