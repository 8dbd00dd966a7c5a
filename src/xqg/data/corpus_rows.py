"""Stream a corpus file's rows as UTF-8 ``(docid, title, text)`` bytes: DPR TSV, JSONL (plain or gzip, see
:mod:`xqg.core.io`) or parquet. Errors name the file, the line and the field; progress follows the raw file."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import pyarrow.parquet as pq

from xqg.core.errors import XqgInputError
from xqg.core.io import open_binary
from xqg.data.formats.dpr import DprTsvParser
from xqg.data.formats.jsonl import Fields


def detect_format(path: Path) -> str:
    """``tsv``, ``jsonl`` or ``parquet`` from the file name (``.tsv[.gz]``, ``.jsonl[.gz]``/``.json[.gz]``,
    ``.parquet``), else sniffed."""
    name = path.name.lower().removesuffix(".gz")
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith((".tsv", ".txt")):
        return "tsv"
    if name.endswith((".jsonl", ".json")):
        return "jsonl"
    with open_binary(path, what="corpus file") as f:
        head = f.read(1 << 12).lstrip()
    return "jsonl" if head.startswith(b"{") else "tsv"


def _raw(stream: IO[bytes]) -> IO[bytes]:
    """The file beneath a gzip stream (or the stream itself): its position is what progress can follow."""
    return stream.fileobj if isinstance(stream, gzip.GzipFile) else stream  # type: ignore[return-value]


class CorpusRows:
    """Streams (docid, title, text) as UTF-8 bytes from one or several corpus files (DPR TSV, JSONL or parquet;
    several are read one after the other, in the given order); ``path`` and ``line`` say where it is (for
    errors), ``bar`` is a progress bar advanced by the bytes read from disk."""

    def __init__(self, path: Path | Sequence[Path], fmt: str | Sequence[str], bar: Any) -> None:
        self.files = [Path(path)] if isinstance(path, str | Path) else [Path(p) for p in path]
        fmts = [fmt] * len(self.files) if isinstance(fmt, str) else list(fmt)
        if len(fmts) != len(self.files) or not self.files:
            raise ValueError("one format per corpus file")
        self.formats = fmts
        self.path = self.files[0]
        self.fmt = fmts[0]
        self.bar = bar
        self.line = 0

    def _lines(self, stream: IO[bytes], raw: IO[bytes]) -> Iterator[str]:
        last = 0
        for i, line in enumerate(stream):
            self.line += 1
            if (i & 0x3FFF) == 0:
                pos = raw.tell()
                self.bar.update(pos - last)
                last = pos
            try:
                yield line.decode("utf-8")
            except UnicodeDecodeError as e:
                raise XqgInputError(f"not valid UTF-8 ({e.reason})", path=self.path, line=self.line) from None
        self.bar.update(max(0, raw.tell() - last))

    def __iter__(self) -> Iterator[tuple[bytes, bytes, bytes]]:
        for path, fmt in zip(self.files, self.formats, strict=True):
            self.path, self.fmt, self.line = path, fmt, 0
            yield from self._one()

    def _one(self) -> Iterator[tuple[bytes, bytes, bytes]]:
        if self.fmt == "parquet":
            yield from self._parquet()
            return
        with open_binary(self.path, what="corpus file") as stream:
            raw = _raw(stream)
            try:
                if self.fmt == "tsv":
                    yield from self._tsv(stream, raw)
                else:
                    yield from self._jsonl(self._lines(stream, raw))
            except (EOFError, gzip.BadGzipFile) as e:
                raise XqgInputError(
                    f"truncated or corrupt gzip ({e})", path=self.path, line=self.line
                ) from None

    def _tsv(self, stream: IO[bytes], raw: IO[bytes]) -> Iterator[tuple[bytes, bytes, bytes]]:
        """DPR TSV rows (header optional, csv quoting, strict column count: :mod:`xqg.data.formats.dpr`)."""
        parser = DprTsvParser(self.path)
        row = parser.row
        bar = self.bar
        last = 0
        line = self.line
        try:
            for line, data in enumerate(stream, start=self.line + 1):
                if (line & 0x3FFF) == 0:
                    pos = raw.tell()
                    bar.update(pos - last)
                    last = pos
                got = row(data, line)
                if got is not None:
                    yield got
        finally:
            self.line = line
        bar.update(max(0, raw.tell() - last))

    def _parquet(self) -> Iterator[tuple[bytes, bytes, bytes]]:
        """Parquet rows with ``docid`` (or ``id``), ``title``, ``text`` columns (e.g. the released xQG corpus)."""
        try:
            pf = pq.ParquetFile(self.path)
        except Exception as e:
            raise XqgInputError(f"not a readable parquet file ({e})", path=self.path) from None
        names = set(pf.schema_arrow.names)
        id_col = "docid" if "docid" in names else "id"
        missing = [c for c in (id_col, "text") if c not in names]
        if missing:
            raise XqgInputError(
                f"parquet corpus needs columns docid, title, text; has {sorted(names)}",
                path=self.path,
                field=missing[0],
            )
        cols = [id_col, "text"] + (["title"] if "title" in names else [])
        size = self.path.stat().st_size
        rows_total = max(1, pf.metadata.num_rows)
        for batch in pf.iter_batches(batch_size=8192, columns=cols):
            data = batch.to_pydict()
            titles = data.get("title") or [""] * batch.num_rows
            for docid, text, title in zip(data[id_col], data["text"], titles, strict=True):
                self.line += 1
                if docid is None or not str(docid).strip():
                    raise XqgInputError("empty docid", path=self.path, line=self.line, field=id_col)
                yield str(docid).encode("utf-8"), (title or "").encode("utf-8"), (text or "").encode("utf-8")
            self.bar.update(size * batch.num_rows // rows_total)

    def _jsonl(self, lines: Iterator[str]) -> Iterator[tuple[bytes, bytes, bytes]]:
        for line in lines:
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise XqgInputError(f"malformed JSON ({e.msg})", path=self.path, line=self.line) from None
            if not isinstance(obj, dict):
                raise XqgInputError("expected a JSON object", path=self.path, line=self.line)
            f = Fields(obj, self.path, self.line)
            docid = f.ident("docid" if "docid" in obj or "id" not in obj else "id")
            title = f.text("title", required=False, allow_empty=True)
            text = f.text("text", allow_empty=True)
            yield docid.encode("utf-8"), title.encode("utf-8"), text.encode("utf-8")
