"""Streaming JSONL (plain or gzip, see :mod:`xqg.core.io`) with line numbers for errors, and atomic JSONL
writing (gzip with a zero timestamp, so equal rows give byte-identical files)."""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from xqg.core.artifacts import atomic_path
from xqg.core.errors import XqgInputError
from xqg.core.io import open_binary


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-blank line; malformed JSON or a non-object is an error."""
    for lineno, _raw, obj in iter_jsonl_lines(path):
        yield lineno, obj


def iter_jsonl_lines(path: str | Path) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """Like :func:`iter_jsonl`, with each line's raw text too (for readers that keep lines, not objects)."""
    with open_binary(path) as f:
        yield from parse_jsonl_lines(f, path)


def parse_jsonl_lines(
    lines: Iterable[str] | Iterable[bytes], path: str | Path
) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """The one JSONL parse loop: ``(line_number, raw line, object)`` per non-blank line of ``lines`` (an open
    binary file, decoded line by line so bad UTF-8 is reported on its own line, or text already split); errors
    name ``path`` and the line."""
    lineno = 0
    try:
        for lineno, raw in enumerate(lines, start=1):
            line = raw.decode("utf-8") if isinstance(raw, bytes) else raw
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise XqgInputError(
                    f"malformed JSON ({e.msg} at column {e.colno})", path=path, line=lineno
                ) from None
            if not isinstance(obj, dict):
                raise XqgInputError(
                    f"expected a JSON object, got {type(obj).__name__}", path=path, line=lineno
                )
            yield lineno, line, obj
    except UnicodeDecodeError as e:
        raise XqgInputError(f"not valid UTF-8 ({e.reason})", path=path, line=max(lineno, 1)) from None
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise XqgInputError(f"truncated or corrupt gzip ({e})", path=path, line=lineno + 1) from None


def open_write_binary(path: Path, gz: bool) -> IO[bytes]:
    """Binary writer; gzip with a zero timestamp (equal content gives byte-identical files) when ``gz``."""
    if gz:
        raw = open(path, "wb")
        return gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=6, mtime=0)  # type: ignore[return-value]
    return open(path, "wb", buffering=1 << 20)


def close_writer(f: IO[bytes]) -> None:
    """Close a writer and, for a gzip wrapper, the file beneath it (GzipFile leaves a passed fileobj open)."""
    inner = f.fileobj if isinstance(f, gzip.GzipFile) else None
    f.close()
    if inner is not None:
        inner.close()


def write_jsonl(path: str | Path, rows: Iterable[Mapping[str, Any]]) -> int:
    """Write rows atomically (gzip when the name ends in ``.gz``); returns the number written."""
    p = Path(path)
    n = 0
    with atomic_path(p) as tmp:
        out = open_write_binary(tmp, p.name.endswith(".gz"))
        try:
            for row in rows:
                out.write(json.dumps(row, ensure_ascii=False).encode("utf-8") + b"\n")
                n += 1
        finally:
            close_writer(out)
    return n


class Fields:
    """Typed field access on one JSON object with file:line:field errors."""

    def __init__(self, obj: Mapping[str, Any], path: str | Path, line: int) -> None:
        self.obj = obj
        self.path = path
        self.line = line

    def error(self, field: str, message: str) -> XqgInputError:
        return XqgInputError(message, path=self.path, line=self.line, field=field)

    def get(
        self, field: str, kind: type | tuple[type, ...], *, required: bool = True, default: Any = None
    ) -> Any:
        if field not in self.obj or self.obj[field] is None:
            if required:
                raise self.error(field, "missing")
            return default
        value = self.obj[field]
        if isinstance(value, bool) or not isinstance(value, kind):
            names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise self.error(field, f"expected {names}, got {type(value).__name__}")
        return value

    def text(self, field: str, *, required: bool = True, allow_empty: bool = False) -> str:
        value = self.get(field, str, required=required, default="")
        if required and not allow_empty and not value.strip():
            raise self.error(field, "empty string")
        return value

    def ident(self, field: str) -> str:
        """An id: a non-empty string, or an integer (converted to its decimal string)."""
        value = self.get(field, (str, int))
        value = str(value)
        if not value.strip():
            raise self.error(field, "empty id")
        return value

    def str_list(self, field: str, *, required: bool = True, allow_empty: bool = False) -> list[str]:
        value = self.get(field, list, required=required, default=[])
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise self.error(f"{field}[{i}]", f"expected str, got {type(item).__name__}")
        if required and not allow_empty and not value:
            raise self.error(field, "empty list")
        return value
