"""DPR TSV corpus files (``psgs_w100.tsv``, XOR-Retrieve's ``enwiki_20190201_w100.tsv``): one passage per line,
``id<TAB>text<TAB>title``, an optional ``id<TAB>text<TAB>title`` header row (the reference readers skip a first
row whose first column is ``id``), fields csv-quoted as DPR writes them (a field wrapped in double quotes, inner
quotes doubled; a quote inside an unquoted field is literal).

Reading never guesses: a row whose column count is not 3 after quote handling (an unquoted TAB in the text, a
missing column), a quote that opens a field and does not close on the same line (which would swallow the
following rows), text after a closing quote, a carriage return inside a row, or a first column that is not an id
(no spaces, not empty) is an :class:`XqgInputError` naming ``file:line``. Rows are parsed here
(:class:`DprTsvParser`) and streamed by :class:`xqg.data.corpus_rows.CorpusRows`; files are written atomically.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from xqg.core.artifacts import atomic_path
from xqg.core.errors import XqgInputError
from xqg.core.io import open_binary
from xqg.data.formats.jsonl import close_writer, open_write_binary
from xqg.data.records import Passage

COLUMNS = ("id", "text", "title")
_NOT_ID = re.compile(rb"[\s\"]")
# a first row made of these words is a header attempt: it must then be exactly id, text, title
_HEADER_WORDS = {b"id", b"docid", b"doc_id", b"pid", b"_id", b"text", b"title", b"contents", b"passage"}
# A passage is ~600 bytes; a field this long means a broken file, not a passage.
_MAX_FIELD = 1 << 24


def _strip_eol(line: bytes) -> bytes:
    if line.endswith(b"\n"):
        line = line[:-1]
        if line.endswith(b"\r"):
            line = line[:-1]
    return line


class DprTsvParser:
    """Parses the lines of one DPR TSV file into ``(docid, title, text)`` UTF-8 bytes.

    Feed every line (bytes, with its line ending) to :meth:`row` in order; it returns None for the header and
    for blank lines. ``path`` and the 1-based ``line`` number go into every error.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._first = True
        csv.field_size_limit(max(csv.field_size_limit(), _MAX_FIELD))

    def _error(self, msg: str, line: int, field: str | None = None) -> XqgInputError:
        return XqgInputError(msg, path=self.path, line=line, field=field)

    def _fields(self, raw: bytes, line: int) -> list[bytes]:
        if b"\r" in raw:
            raise self._error("carriage return inside a row (DPR rows end at a line break)", line)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise self._error(f"not valid UTF-8 ({e.reason})", line) from None
        if b'"' not in raw:  # the common case: no quoting, tabs split the columns
            return raw.split(b"\t")
        try:
            rows = list(csv.reader([text], delimiter="\t", quotechar='"', doublequote=True, strict=True))
        except csv.Error as e:
            if "end of data" in str(e):
                what = "a quoted field does not close on this line (it would swallow the following rows)"
            else:
                what = f"text after a closing quote ({e}); quote the whole field and double inner quotes"
            raise self._error(f"bad quoting: {what}", line) from None
        return [f.encode("utf-8") for f in rows[0]] if rows else [b""]

    def _header(self, fields: list[bytes], line: int) -> bool:
        """Whether the first row ``fields`` is the header. A header-like first row (its first column ``id``, or
        made of column names only) that is not ``id, text, title`` in this order is an error: the reference
        readers take the columns in this order whatever a header says, so any other order would be misread."""
        names = [f.strip().lower() for f in fields]
        if names[0] != b"id" and not (len(names) > 1 and all(n in _HEADER_WORDS for n in names)):
            return False
        if names != [c.encode() for c in COLUMNS]:
            got = [n.decode("utf-8", "replace") for n in names]
            raise self._error(
                f"a header row must be id<TAB>text<TAB>title (DPR format, in this order), got {got}",
                line,
                field="id" if names[0] != b"id" else "header",
            )
        return True

    def row(self, line_bytes: bytes, line: int) -> tuple[bytes, bytes, bytes] | None:
        raw = _strip_eol(line_bytes)
        if not raw:
            return None
        fields = self._fields(raw, line)
        if self._first:
            self._first = False
            if self._header(fields, line):
                return None
        if len(fields) != 3:
            hint = " (an unquoted TAB inside a field?)" if len(fields) > 3 else ""
            raise self._error(f"expected 3 tab-separated columns, got {len(fields)}{hint}", line)
        docid, text, title = fields
        if not docid:
            raise self._error("empty docid", line, field="id")
        if _NOT_ID.search(docid) or len(docid) > 256:
            shown = docid[:40].decode("utf-8", "replace")
            raise self._error(
                f"{shown!r} is not a passage id (ids have no spaces or quotes)", line, field="id"
            )
        if docid == b"id":
            raise self._error("a second header row (or a passage with the id 'id')", line, field="id")
        return docid, title, text


def looks_like_header(p: Passage) -> bool:
    """Whether a first row with these fields reads as a (maybe malformed) header (see ``DprTsvParser``)."""
    names = [x.strip().lower().encode("utf-8") for x in (p.docid, p.text, p.title)]
    return names[0] == b"id" or all(n in _HEADER_WORDS for n in names)


def iter_dpr_tsv(path: str | Path) -> Iterator[Passage]:
    """Passages of a DPR TSV file (plain or gzip), validated as described in the module docstring."""
    p = Path(path)
    parser = DprTsvParser(p)
    with open_binary(p, what="corpus file") as f:
        for i, line in enumerate(f, start=1):
            got = parser.row(line, i)
            if got is not None:
                docid, title, text = (x.decode("utf-8") for x in got)
                yield Passage(docid, title, text)


def write_dpr_tsv(path: str | Path, passages: Iterable[Passage], *, header: bool = True) -> int:
    """Write passages as a DPR TSV (``id\\ttext\\ttitle`` header unless ``header=False``, csv quoting where a
    field needs it), atomically; returns the count."""
    n = 0
    p = Path(path)
    with atomic_path(p) as tmp:
        raw = open_write_binary(tmp, p.name.endswith(".gz"))
        try:
            f = io.TextIOWrapper(raw, encoding="utf-8", newline="", write_through=False)
            w = csv.writer(f, delimiter="\t", quotechar='"', lineterminator="\n")
            if header:
                w.writerow(COLUMNS)
            for psg in passages:
                if any(c in s for s in (psg.text, psg.title) for c in "\r\n"):
                    raise XqgInputError("passage contains a line break", field=f"docid {psg.docid}")
                if psg.docid == "id" or (not header and n == 0 and looks_like_header(psg)):
                    raise XqgInputError(
                        "this passage would read back as a header row", field=f"docid {psg.docid!r}"
                    )
                if not psg.docid or _NOT_ID.search(psg.docid.encode("utf-8")):
                    raise XqgInputError(
                        "a DPR passage id must be non-empty, without spaces or quotes",
                        field=f"docid {psg.docid!r}",
                    )
                w.writerow([psg.docid, psg.text, psg.title])
                n += 1
            f.flush()
            f.detach()
        finally:
            close_writer(raw)
    return n
