"""Tevatron training files (``.jsonl`` / ``.jsonl.gz``), as released for XOR-TyDi and wikipedia-nq:
``{query_id, query, answers, positive_passages: [{docid, title, text}], negative_passages: [...]}``.

An optional ``lang`` field (written by the synthetic world; absent from the released files) is kept.

DPR's training layout (``{question, answers, positive_ctxs: [{passage_id, title, text}], hard_negative_ctxs,
negative_ctxs}``, the shape of XOR-TyDi's DPR-format files and of some copies of Tevatron's loading scripts) is
read too: an example is taken as DPR-shaped only when it has ``positive_ctxs`` and no ``positive_passages``; its
id is ``id`` / ``q_id`` / ``qid`` when present, else its line number; hard negatives come before the others.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, overload

import numpy as np

from xqg.core.languages import normalize_lang
from xqg.data.formats.jsonl import Fields, iter_jsonl, iter_jsonl_lines, write_jsonl
from xqg.data.records import Passage, TrainExample

_DOCID_KEYS = ("docid", "id", "passage_id", "psg_id")


def _from_dpr(obj: dict[str, Any], line: int) -> dict[str, Any]:
    """The Tevatron shape of a DPR-layout example (module doc); other objects are returned as they are."""
    if "positive_ctxs" not in obj or "positive_passages" in obj:
        return obj
    qid = next((obj[k] for k in ("query_id", "id", "q_id", "qid") if obj.get(k) is not None), f"line{line}")
    negatives = list(obj.get("hard_negative_ctxs") or []) + list(obj.get("negative_ctxs") or [])
    out = {k: v for k, v in obj.items() if k not in ("positive_ctxs", "hard_negative_ctxs", "negative_ctxs")}
    out.update(
        query_id=qid, query=obj.get("query", obj.get("question")), positive_passages=obj["positive_ctxs"]
    )
    out["negative_passages"] = negatives
    return out


def _passages(f: Fields, field: str, *, required: bool) -> list[Passage]:
    items = f.get(field, list, required=required, default=[])
    out = []
    for i, item in enumerate(items):
        where = f"{field}[{i}]"
        if not isinstance(item, dict):
            raise f.error(where, f"expected an object, got {type(item).__name__}")
        docid = next((item[k] for k in _DOCID_KEYS if item.get(k) is not None), None)
        if isinstance(docid, bool) or not isinstance(docid, str | int) or not str(docid).strip():
            raise f.error(f"{where}.docid", "missing or not a string/integer id")
        title = item.get("title", "")
        if not isinstance(title, str):
            raise f.error(f"{where}.title", f"expected str, got {type(title).__name__}")
        text = item.get("text")
        if not isinstance(text, str):
            raise f.error(
                f"{where}.text", "missing" if text is None else f"expected str, got {type(text).__name__}"
            )
        out.append(Passage(str(docid), title, text))
    return out


def parse_tevatron(
    obj: dict[str, Any], path: str | Path, line: int, *, require_positive: bool = True
) -> TrainExample:
    """Validate one Tevatron (or DPR-layout) object; errors name file, line and field
    (``positive_passages[0].text``)."""
    obj = _from_dpr(obj, line)
    f = Fields(obj, path, line)
    qid = f.ident("query_id")
    query = f.text("query")
    answers = f.str_list("answers", required=False, allow_empty=True)
    positives = _passages(f, "positive_passages", required=True)
    if require_positive and not positives:
        raise f.error("positive_passages", "empty list (a training example needs a positive passage)")
    negatives = _passages(f, "negative_passages", required=False)
    lang = None
    if obj.get("lang") is not None:
        raw = f.text("lang")
        try:
            lang = normalize_lang(raw)
        except KeyError as e:
            raise f.error("lang", str(e.args[0])) from None
    return TrainExample(qid, query, tuple(answers), tuple(positives), tuple(negatives), lang)


def iter_tevatron(path: str | Path, *, require_positive: bool = True) -> Iterator[TrainExample]:
    """Stream validated training examples from a Tevatron file (plain or gzip)."""
    for lineno, obj in iter_jsonl(path):
        yield parse_tevatron(obj, path, lineno, require_positive=require_positive)


class TevatronFile(Sequence[TrainExample]):
    """Random access to a Tevatron file's examples, validated once on load, kept as raw UTF-8 JSON lines in one
    buffer (plus int64 offsets) and parsed on access: far less memory than Python objects for NQ-sized files,
    and one object, so DataLoader workers forked from it do not copy it page by page through refcounts."""

    def __init__(self, path: str | Path, *, require_positive: bool = True) -> None:
        self.path = Path(path)
        self.require_positive = require_positive
        buf = bytearray()
        offsets = [0]
        lines: list[int] = []
        for lineno, line, obj in iter_jsonl_lines(self.path):
            parse_tevatron(obj, self.path, lineno, require_positive=require_positive)
            buf += line.encode("utf-8")
            offsets.append(len(buf))
            lines.append(lineno)
        self._buf = bytes(buf)
        del buf
        self._offsets = np.asarray(offsets, dtype=np.int64)
        self._lines = np.asarray(lines, dtype=np.int64)

    def __len__(self) -> int:
        return len(self._lines)

    @overload
    def __getitem__(self, i: int) -> TrainExample: ...
    @overload
    def __getitem__(self, i: slice) -> list[TrainExample]: ...

    def __getitem__(self, i: int | slice) -> TrainExample | list[TrainExample]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        a, b = int(self._offsets[i]), int(self._offsets[i + 1])
        obj = json.loads(self._buf[a:b])
        return parse_tevatron(obj, self.path, int(self._lines[i]), require_positive=self.require_positive)


def tevatron_row(ex: TrainExample) -> dict[str, Any]:
    row: dict[str, Any] = {
        "query_id": ex.qid,
        "query": ex.query,
        "answers": list(ex.answers),
        "positive_passages": [p.to_json() for p in ex.positives],
        "negative_passages": [p.to_json() for p in ex.negatives],
    }
    if ex.lang is not None:
        row["lang"] = ex.lang
    return row


def write_tevatron(path: str | Path, examples: Iterable[TrainExample]) -> int:
    """Write examples in the Tevatron format, atomically (gzip for ``.gz``, byte-identical for equal input)."""
    return write_jsonl(path, (tevatron_row(ex) for ex in examples))
