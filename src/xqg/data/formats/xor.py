"""XOR-TyDi XOR-Retrieve question files: ``{id, question, answers, lang, split}`` per line (JSONL, maybe gzip).

The released train file writes Arabic as ``" ar"``; languages are normalised with :func:`normalize_lang`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from xqg.core.languages import normalize_lang
from xqg.data.formats.jsonl import Fields, iter_jsonl, write_jsonl
from xqg.data.records import Question


def iter_xor_questions(path: str | Path) -> Iterator[Question]:
    """Stream validated questions; duplicate ids, empty answer lists and wrong types are one-line errors."""
    seen: dict[str, int] = {}
    for lineno, obj in iter_jsonl(path):
        f = Fields(obj, path, lineno)
        qid = f.ident("id")
        if qid in seen:
            raise f.error("id", f"duplicate id {qid!r} (first on line {seen[qid]})")
        seen[qid] = lineno
        text = f.text("question")
        answers = f.str_list("answers")
        raw_lang = f.text("lang")
        try:
            lang = normalize_lang(raw_lang)
        except KeyError as e:
            raise f.error("lang", str(e.args[0])) from None
        split = f.get("split", str, required=False)
        yield Question(qid=qid, text=text, lang=lang, answers=tuple(answers), split=split)


def read_xor_questions(path: str | Path, languages: Iterable[str] | None = None) -> list[Question]:
    """All questions of a file (optionally only some languages), validated."""
    keep = {normalize_lang(x) for x in languages} if languages is not None else None
    return [q for q in iter_xor_questions(path) if keep is None or q.lang in keep]


def write_xor_questions(path: str | Path, questions: Iterable[Question], split: str | None = None) -> int:
    """Write questions in the XOR-TyDi format (atomically; gzip if the name ends in .gz)."""

    def rows() -> Iterator[dict[str, object]]:
        for q in questions:
            row: dict[str, object] = {
                "id": q.qid,
                "question": q.text,
                "answers": list(q.answers),
                "lang": q.lang,
            }
            s = split if split is not None else q.split
            if s is not None:
                row["split"] = s
            yield row

    return write_jsonl(path, rows())
