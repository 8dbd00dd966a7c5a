"""One exception type for bad user input, so entry points can print one clear line instead of a traceback."""

from __future__ import annotations

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
