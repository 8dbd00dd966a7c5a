"""One exception type for bad user input, so entry points can print one clear line instead of a traceback."""

from __future__ import annotations

import errno
from pathlib import Path


class XqgInputError(ValueError):
    """Bad input data or configuration: says which file, which line and which field."""

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.path = str(path) if path is not None else None
        self.line = line
        self.field = field
        self.message = message
        where = ""
        if self.path is not None:
            where = self.path + (f":{line}" if line is not None else "")
        if field is not None:
            where = f"{where} field '{field}'" if where else f"field '{field}'"
        super().__init__(f"{where}: {message}" if where else message)


class MissingResourceError(RuntimeError):
    """A resource (a tokenizer table, a hub file) is absent; the message says how to get it."""


#: Write failures that are the place's fault, not the program's: reported in one line, never as a traceback.
_PLACE_ERRNOS = {
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
}


def place_error_message(e: BaseException) -> str | None:
    """One line for an ``OSError`` caused by where files go (read-only or unwritable folder, full disk, quota),
    naming the path and what to do; None for any other error (a bug, to be raised as is)."""
    if not isinstance(e, OSError) or e.errno not in _PLACE_ERRNOS:
        return None
    where = e.filename if e.filename is not None else "the cache or output folder"
    places = "paths.cache_dir / paths.output_dir (--cache-dir, --json)"
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        todo = f"free space there or point {places} at another disk"
    else:
        todo = f"fix its permissions or point {places} elsewhere"
    verb = "cannot access" if e.errno in (errno.EACCES, errno.EPERM) else "cannot write"  # EACCES: reads too
    return f"{verb} {where}: {_PLACE_ERRNOS[e.errno]}; {todo}"
