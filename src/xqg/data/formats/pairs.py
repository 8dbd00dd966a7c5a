"""Generator training pairs (passage -> question in language L) as JSONL:
``{docid, lang, title, passage, question}`` per line."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from xqg.core.artifacts import fingerprint
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


def pairs_fingerprint(pairs: Sequence[GeneratorPair]) -> str:
    """What a generator was trained on: the fingerprint of its pairs' content."""
    return fingerprint([[p.docid, p.lang, p.title, p.passage, p.question] for p in pairs])


def split_pairs(
    pairs: Sequence[GeneratorPair], val_fraction: float
) -> tuple[list[GeneratorPair], list[GeneratorPair]]:
    """Hold out whole passages (by docid hash) for the validation loss, so it measures unseen passages."""
    if val_fraction <= 0:
        return list(pairs), []
    docids = sorted({p.docid for p in pairs}, key=lambda d: fingerprint(d))
    n_val = max(1, round(len(docids) * val_fraction)) if len(docids) > 1 else 0
    val_docs = set(docids[:n_val])
    return [p for p in pairs if p.docid not in val_docs], [p for p in pairs if p.docid in val_docs]
