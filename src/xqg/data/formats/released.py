"""Released generated queries (``ielab/xor-tydi-xqg-augmented``): one row per passage,
``{docid, title, text, generated_queries: {lang: [query, ...]}}``, as JSONL (maybe gzip) or parquet."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from xqg.core.errors import XqgInputError
from xqg.core.languages import normalize_lang
from xqg.data.formats.jsonl import Fields, iter_jsonl
from xqg.data.records import Passage


def _rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    if path.name.endswith(".parquet"):
        try:
            pf = pq.ParquetFile(path)
        except Exception as e:
            raise XqgInputError(f"not a readable parquet file ({e})", path=path) from None
        row = 0
        for batch in pf.iter_batches(batch_size=4096):
            for obj in batch.to_pylist():
                row += 1
                yield row, obj
    else:
        yield from iter_jsonl(path)


def iter_released_records(path: str | Path) -> Iterator[tuple[Passage, dict[str, list[str]]]]:
    """(passage, {lang: queries}) per row, validated (file:line:field errors; parquet rows count as lines)."""
    p = Path(path)
    for line, obj in _rows(p):
        f = Fields(obj, p, line)
        docid = f.ident("docid")
        title = f.text("title", required=False, allow_empty=True)
        text = f.text("text", allow_empty=True)
        gq = f.get("generated_queries", dict)
        out: dict[str, list[str]] = {}
        for raw_lang, queries in gq.items():
            try:
                lang = normalize_lang(str(raw_lang))
            except KeyError as e:
                raise f.error(f"generated_queries.{raw_lang}", str(e.args[0])) from None
            if not isinstance(queries, list) or not all(isinstance(q, str) for q in queries):
                raise f.error(f"generated_queries.{raw_lang}", "expected a list of strings")
            out[lang] = queries
        yield Passage(docid, title, text), out


def iter_released_generated(path: str | Path) -> Iterator[tuple[str, str, list[str]]]:
    """``(docid, lang, queries)`` for every passage and language, in file order."""
    for passage, by_lang in iter_released_records(path):
        for lang, queries in by_lang.items():
            yield passage.docid, lang, queries
