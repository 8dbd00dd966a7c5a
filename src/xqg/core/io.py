"""One way to open the project's input files: plain or gzip, told apart by magic bytes (never by name)."""

from __future__ import annotations

import gzip
import io
from pathlib import Path
from typing import IO

from xqg.core.errors import XqgInputError

GZIP_MAGIC = b"\x1f\x8b"


def is_gzip(path: str | Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


def open_binary(path: str | Path, *, what: str = "file") -> IO[bytes]:
    """Read bytes, un-gzipping transparently; a missing file or a folder is one clear error naming it."""
    p = Path(path)
    if not p.is_file():
        found = "is a directory, expected a file" if p.is_dir() else "is not a regular file"
        raise XqgInputError(f"{what} not found" if not p.exists() else f"{what} {found}", path=p)
    try:
        gz = is_gzip(p)
        return gzip.open(p, "rb") if gz else open(p, "rb")  # type: ignore[return-value]
    except PermissionError:
        raise XqgInputError(f"cannot read the {what}: permission denied", path=p) from None


def open_text(path: str | Path, *, what: str = "file") -> IO[str]:
    """Read UTF-8 text, un-gzipping transparently (see :func:`open_binary`)."""
    return io.TextIOWrapper(open_binary(path, what=what), encoding="utf-8")
