"""XOR-TyDi Gold Paragraph data (``tydi_xor_gp.zip`` -> ``tydi_xor_gp/gp_squad_{train,dev}_data.json``): the
questions with the English Wikipedia paragraph annotated as their answer, in the SQuAD layout
``{"data": [{"title", "paragraphs": [{"context", "qas": [{"id", "question", "answers", "lang"}]}]}]}``.

The reference generator (DSI-QG's ``process_xorqa.py``, whose mT5 checkpoint the paper used) was trained on
these (passage -> question in its language) pairs: the passage title is the part of ``title`` before
``_parentSection``, the passage is ``context`` with line breaks made spaces, the language is the question's
``lang`` field (stripped: the released files write Arabic as ``" ar"``), and a question id seen before is
skipped. The reference reads only each article's first paragraph and first question; every paragraph and
question is read here (the same pairs when, as released, each article holds one of each).
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from xqg.core.artifacts import fingerprint
from xqg.core.errors import XqgInputError
from xqg.core.io import open_binary
from xqg.core.languages import normalize_lang
from xqg.data.records import GeneratorPair

TRAIN_MEMBER = "gp_squad_train_data.json"
DEV_MEMBER = "gp_squad_dev_data.json"
PARENT_SECTION = "_parentSection"


def gold_title(raw: str, skip: int = 0) -> str:
    """The passage title of a gold-paragraph ``title``: the part before ``_parentSection`` (all of it when the
    marker is absent), after dropping ``skip`` leading characters (DSI-QG drops 6, an undocumented prefix)."""
    raw = raw.strip()
    cut = raw.find(PARENT_SECTION)
    return (raw[skip:cut] if cut >= 0 else raw[skip:]).strip()


def _member_name(names: Iterable[str], member: str, where: Path) -> str:
    """The archive member whose file name is ``member`` (the release keeps it in a ``tydi_xor_gp/`` folder)."""
    names = [n for n in names if not n.endswith("/")]
    if member in names:
        return member
    hits = sorted(n for n in names if PurePosixPath(n).name == PurePosixPath(member).name)
    if len(hits) != 1:
        found = "no member" if not hits else f"{len(hits)} members ({', '.join(hits)})"
        raise XqgInputError(f"{found} named {member!r}; members: {', '.join(sorted(names)[:10])}", path=where)
    return hits[0]


def load_gold_paragraph(path: str | Path, member: str = TRAIN_MEMBER) -> tuple[str, dict[str, Any]]:
    """``(where, document)``: the JSON of ``member`` inside the zip at ``path`` (found by file name in any
    folder), or of ``path`` itself when it is the extracted (maybe gzipped) JSON file."""
    p = Path(path)
    try:
        if zipfile.is_zipfile(p):
            with zipfile.ZipFile(p) as zf:
                name = _member_name(zf.namelist(), member, p)
                where = f"{p}!{name}"
                raw = zf.read(name)
        else:
            where = str(p)
            with open_binary(p, what="gold paragraph file") as f:
                raw = f.read()
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise XqgInputError(f"unreadable gold paragraph file ({type(e).__name__}: {e})", path=p) from None
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise XqgInputError(f"not a JSON document ({e})", path=where) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise XqgInputError("expected a SQuAD-style object with a 'data' list", path=where, field="data")
    return where, doc


def _text(obj: Mapping[str, Any], key: str, where: str, field: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value.strip():
        got = "missing" if value is None else "empty" if isinstance(value, str) else type(value).__name__
        raise XqgInputError(f"expected a non-empty string, got {got}", path=where, field=f"{field}.{key}")
    return value


def _list(obj: Mapping[str, Any], key: str, where: str, field: str) -> list[Any]:
    value = obj.get(key)
    if not isinstance(value, list):
        got = "missing" if value is None else type(value).__name__
        raise XqgInputError(f"expected a list, got {got}", path=where, field=f"{field}.{key}")
    return value


def passage_docid(title: str, passage: str) -> str:
    """A stable id for a gold paragraph (the file has none): equal passages share it, so holding out by docid
    keeps every question of a passage on one side."""
    return "gp-" + fingerprint([title, passage])[:16]


def iter_gold_paragraph_pairs(
    path: str | Path,
    member: str = TRAIN_MEMBER,
    *,
    languages: Iterable[str] | None = None,
    title_skip: int = 0,
    seen: set[str] | None = None,
) -> Iterator[GeneratorPair]:
    """Generator pairs (gold paragraph -> question in its language) of one gold-paragraph file, in file order.

    ``languages``: keep only these (None: all); ``seen``: question ids already taken (updated; a repeated id is
    skipped, as the reference does across its train and dev files). Errors name the file and the field path.
    """
    where, doc = load_gold_paragraph(path, member)
    keep = {normalize_lang(x) for x in languages} if languages is not None else None
    seen = set() if seen is None else seen
    for i, article in enumerate(doc["data"]):
        field = f"data[{i}]"
        if not isinstance(article, dict):
            raise XqgInputError("expected an object", path=where, field=field)
        title = gold_title(_text(article, "title", where, field), title_skip)
        for j, para in enumerate(_list(article, "paragraphs", where, field)):
            pfield = f"{field}.paragraphs[{j}]"
            if not isinstance(para, dict):
                raise XqgInputError("expected an object", path=where, field=pfield)
            passage = " ".join(_text(para, "context", where, pfield).strip().splitlines())
            docid = passage_docid(title, passage)
            for k, qa in enumerate(_list(para, "qas", where, pfield)):
                qfield = f"{pfield}.qas[{k}]"
                if not isinstance(qa, dict):
                    raise XqgInputError("expected an object", path=where, field=qfield)
                qid = qa.get("id")
                if isinstance(qid, bool) or not isinstance(qid, str | int) or not str(qid).strip():
                    raise XqgInputError(
                        "missing or not a string/integer id", path=where, field=f"{qfield}.id"
                    )
                question = _text(qa, "question", where, qfield).strip()
                try:
                    lang = normalize_lang(_text(qa, "lang", where, qfield))
                except KeyError as e:
                    raise XqgInputError(str(e.args[0]), path=where, field=f"{qfield}.lang") from None
                if str(qid) in seen:
                    continue
                seen.add(str(qid))
                if keep is None or lang in keep:
                    yield GeneratorPair(docid, lang, title, passage, question)
