"""The official XOR-Retrieve prediction file: a JSON array ``[{id, lang, ctxs: [passage text, ...]}]`` (or JSONL
of such objects), plain or gzip. Malformed JSON, missing or mistyped fields and duplicate ids are one-line errors
naming file and line."""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from xqg.core.errors import XqgInputError
from xqg.core.io import open_text
from xqg.data.formats.jsonl import parse_jsonl_lines

IN_MEMORY = "<predictions>"


class Prediction(NamedTuple):
    """One item of the official prediction format ``{id, lang, ctxs: [passage text, ...]}``."""

    qid: str
    lang: str
    ctxs: Sequence[str]


def _line_of_item(text: str, index: int) -> int | None:
    """Line where the ``index``-th element of a top-level JSON array starts (only computed for error messages)."""
    dec = json.JSONDecoder()
    pos = text.index("[") + 1
    for i in range(index + 1):
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if i == index:
            return text.count("\n", 0, pos) + 1
        try:
            _, pos = dec.raw_decode(text, pos)
        except json.JSONDecodeError:
            return None
    return None  # pragma: no cover


def validate_prediction(obj: Any, path: str, line: int | None, where: str) -> Prediction:
    """One ``{id, lang, ctxs}`` object as a :class:`Prediction`; ``where`` (e.g. ``item 3``) prefixes the error
    message when ``line`` is unknown."""

    def err(f: str | None, msg: str) -> XqgInputError:
        return XqgInputError(f"{where}: {msg}" if line is None else msg, path=path, line=line, field=f)

    if not isinstance(obj, dict):
        raise err(None, f"expected a JSON object {{id, lang, ctxs}}, got {type(obj).__name__}")
    for f in ("id", "lang", "ctxs"):
        if f not in obj or obj[f] is None:
            raise err(f, "missing")
    qid = obj["id"]
    if isinstance(qid, bool) or not isinstance(qid, str | int) or not str(qid).strip():
        raise err("id", f"expected a non-empty string id, got {qid!r}")
    lang = obj["lang"]
    if not isinstance(lang, str) or not lang.strip():
        raise err("lang", f"expected a language code, got {lang!r}")
    ctxs = obj["ctxs"]
    if not isinstance(ctxs, list):
        raise err("ctxs", f"expected a list of passage texts, got {type(ctxs).__name__}")
    for i, c in enumerate(ctxs):
        if not isinstance(c, str):
            raise err(f"ctxs[{i}]", f"expected a passage text (str), got {type(c).__name__}")
    return Prediction(str(qid), lang.strip(), ctxs)


def read_predictions(path: str | Path) -> list[Prediction]:
    """Read and check an official prediction file (JSON array or JSONL, plain or gzip)."""
    p = str(path)
    try:
        with open_text(path) as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise XqgInputError(f"not valid UTF-8 ({e.reason})", path=p) from None
    except (EOFError, OSError, zlib.error) as e:
        raise XqgInputError(f"cannot read ({e})", path=p) from None
    stripped = text.lstrip()
    preds: list[Prediction] = []
    lines: list[int | None] = []
    if stripped.startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise XqgInputError(
                f"malformed JSON ({e.msg} at column {e.colno})", path=p, line=e.lineno
            ) from None
        for i, obj in enumerate(data):
            try:
                preds.append(validate_prediction(obj, p, None, f"item {i}"))
            except XqgInputError as e:
                line = _line_of_item(text, i)
                if line is None:
                    raise
                raise XqgInputError(
                    f"item {i}: " + e.message.split(": ", 1)[-1], path=p, line=line, field=e.field
                ) from None
            lines.append(None)
    elif stripped.startswith("{"):
        for lineno, _raw, obj in parse_jsonl_lines(text.split("\n"), p):
            preds.append(validate_prediction(obj, p, lineno, ""))
            lines.append(lineno)
    elif not stripped:
        raise XqgInputError("empty predictions file", path=p)
    else:
        raise XqgInputError(
            "not a predictions file: expected a JSON array [{id, lang, ctxs}] or JSONL", path=p, line=1
        )
    seen: dict[str, int] = {}
    for i, pr in enumerate(preds):
        if pr.qid in seen:
            j = seen[pr.qid]
            line = lines[i] if lines[i] is not None else _line_of_item(text, i)
            first = f"line {lines[j]}" if lines[j] is not None else f"item {j}"
            raise XqgInputError(
                f"duplicate prediction id {pr.qid!r} (first at {first})", path=p, line=line, field="id"
            )
        seen[pr.qid] = i
    return preds


def predictions_from(predictions: str | Path | Sequence[Any]) -> tuple[list[Prediction], str]:
    """Predictions from a file, or from in-memory dicts/:class:`Prediction` (checked the same way); with the
    source's name for messages."""
    if isinstance(predictions, str | Path):
        return read_predictions(predictions), str(predictions)
    out: list[Prediction] = []
    seen: set[str] = set()
    for i, obj in enumerate(predictions):
        pr = obj if isinstance(obj, Prediction) else validate_prediction(obj, IN_MEMORY, None, f"item {i}")
        if pr.qid in seen:
            raise XqgInputError(f"duplicate prediction id {pr.qid!r}", path=IN_MEMORY, field="id")
        seen.add(pr.qid)
        out.append(pr)
    return out, IN_MEMORY
