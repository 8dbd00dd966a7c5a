"""Generator training pairs (passage -> question in language L) as JSONL:
``{docid, lang, title, passage, question}`` per line."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from xqg.core.languages import normalize_lang
from xqg.data.formats.jsonl import Fields, iter_jsonl, write_jsonl
from xqg.data.records import GeneratorPair


def iter_generator_pairs(path: str | Path) -> Iterator[GeneratorPair]:
    """Stream validated pairs (file:line:field errors)."""
    for lineno, obj in iter_jsonl(path):
        f = Fields(obj, path, lineno)
        raw_lang = f.text("lang")
        try:
            lang = normalize_lang(raw_lang)
        except KeyError as e:
            raise f.error("lang", str(e.args[0])) from None
        yield GeneratorPair(
            docid=f.ident("docid"),
            lang=lang,
            title=f.text("title", required=False, allow_empty=True),
            passage=f.text("passage"),
            question=f.text("question"),
        )


def read_generator_pairs(path: str | Path) -> list[GeneratorPair]:
    return list(iter_generator_pairs(path))


def write_generator_pairs(path: str | Path, pairs: Iterable[GeneratorPair]) -> int:
    return write_jsonl(path, (p.to_json() for p in pairs))
