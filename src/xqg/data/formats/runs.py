"""Run files: ranked passages per query, in Tevatron (``qid<TAB>docid<TAB>score``) or TREC
(``qid Q0 docid rank score tag``) format, plain or gzip.

A run maps each qid to its passages ranked best first: by score, descending; ties keep the file order
(Tevatron) or the rank column (TREC). Reading checks every line and names the file and line of the first bad one.
"""

from __future__ import annotations

import gzip
import io
import math
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from xqg.core.artifacts import atomic_path
from xqg.core.errors import XqgInputError
from xqg.core.io import open_text

Run = dict[str, list[tuple[str, float]]]
FORMATS = ("tevatron", "trec")


def detect_run_format(fields: Sequence[str]) -> str | None:
    """``tevatron`` for 3 columns, ``trec`` for 6 with ``Q0`` second, else None."""
    if len(fields) == 3:
        return "tevatron"
    if len(fields) == 6 and fields[1].upper() == "Q0":
        return "trec"
    return None


def _bad_line(p: Path, lineno: int, fields: list[str], fmt: str) -> XqgInputError:
    """The error for a line that does not parse (only called on the slow path)."""
    if fmt == "tevatron" and len(fields) != 3:
        return XqgInputError(
            f"expected 3 columns (qid docid score) like the first line, got {len(fields)}",
            path=p,
            line=lineno,
        )
    if fmt == "trec" and (len(fields) != 6 or fields[1].upper() != "Q0"):
        return XqgInputError(
            f"expected 6 columns (qid Q0 docid rank score tag) like the first line, got {len(fields)}",
            path=p,
            line=lineno,
        )
    score_s = fields[2] if fmt == "tevatron" else fields[4]
    if fmt == "trec":
        try:
            int(fields[3])
        except ValueError:
            return XqgInputError(f"rank {fields[3]!r} is not an integer", path=p, line=lineno, field="rank")
    try:
        score = float(score_s)
    except ValueError:
        return XqgInputError(f"score {score_s!r} is not a number", path=p, line=lineno, field="score")
    if not math.isfinite(score):
        return XqgInputError(
            f"score {score_s!r} is not finite (NaN or infinity would rank arbitrarily)",
            path=p,
            line=lineno,
            field="score",
        )
    return XqgInputError("cannot parse line", path=p, line=lineno)  # pragma: no cover


def read_run(path: str | Path) -> Run:
    """Read a Tevatron or TREC run (detected from the first line); returns ``{qid: [(docid, score), ...]}``."""
    p = Path(path)
    try:
        with open_text(p, what="run file") as f:
            lines = f.read().split("\n")
    except UnicodeDecodeError as e:
        raise XqgInputError(f"not valid UTF-8 ({e.reason})", path=p) from None
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise XqgInputError(f"truncated or corrupt gzip ({e})", path=p) from None
    fmt: str | None = None
    # qid -> [(score, order, docid, line)]
    rows: dict[str, list[tuple[float, int, str, int]]] = {}
    isfinite = math.isfinite
    for lineno, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        if fmt is None:
            fmt = detect_run_format(fields)
            if fmt is None:
                raise XqgInputError(
                    f"unrecognised run line with {len(fields)} columns: expected 'qid docid score' "
                    "(Tevatron) or 'qid Q0 docid rank score tag' (TREC)",
                    path=p,
                    line=lineno,
                )
        try:
            if fmt == "tevatron":
                qid, docid, score_s = fields
                order = 0
            else:
                qid, q0, docid, rank_s, score_s, _tag = fields
                if q0 != "Q0" and q0.upper() != "Q0":
                    raise ValueError
                order = int(rank_s)
            score = float(score_s)
            if not isfinite(score):
                raise ValueError
        except ValueError:
            raise _bad_line(p, lineno, fields, fmt) from None
        lst = rows.get(qid)
        if lst is None:
            lst = rows[qid] = []
        lst.append((score, order, docid, lineno))
    if not rows:
        raise XqgInputError("empty run file", path=p)
    run: Run = {}
    for qid, lst in rows.items():
        docids = {r[2] for r in lst}
        if len(docids) != len(lst):
            _raise_duplicate(p, qid, lst)
        # Tevatron: ties keep file order (stable sort); TREC: ties by the rank column
        lst.sort(key=(lambda r: -r[0]) if fmt == "tevatron" else (lambda r: (-r[0], r[1])))
        run[qid] = [(r[2], r[0]) for r in lst]
    return run


def _raise_duplicate(p: Path, qid: str, lst: list[tuple[float, int, str, int]]) -> None:
    first: dict[str, int] = {}
    for _s, _o, docid, lineno in sorted(lst, key=lambda r: r[3]):
        if docid in first:
            raise XqgInputError(
                f"docid {docid!r} listed twice for query {qid!r} (first on line {first[docid]})",
                path=p,
                line=lineno,
                field="docid",
            )
        first[docid] = lineno


def write_run(
    path: str | Path, run: Mapping[str, Sequence[tuple[str, float]]], fmt: str = "tevatron", tag: str = "xqg"
) -> int:
    """Write a run atomically (gzip when the name ends in ``.gz``); lists must be ranked best first.

    Returns the number of lines written."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown run format {fmt!r}; expected one of {FORMATS}")
    p = Path(path)
    n = 0
    with atomic_path(p) as tmp:
        raw: IO[bytes] = gzip.open(tmp, "wb") if p.name.endswith(".gz") else open(tmp, "wb")  # type: ignore[assignment]
        with raw, io.TextIOWrapper(raw, encoding="utf-8", newline="\n") as f:
            checked: set[str] = set()  # ids already found free of whitespace (a docid recurs across queries)

            def check(name: str, value: str) -> None:
                if value not in checked:
                    if not value or any(c.isspace() for c in value):
                        raise XqgInputError(f"{name} {value!r} is empty or contains whitespace", field=name)
                    checked.add(value)

            for qid, docs in run.items():
                check("qid", qid)
                lines = []
                for rank, (docid, score) in enumerate(docs, start=1):
                    check("docid", docid)
                    value = float(score)
                    s = repr(value)
                    if not math.isfinite(value):
                        raise XqgInputError(
                            f"score of {docid!r} for query {qid!r} is not finite ({s})", field="score"
                        )
                    if fmt == "tevatron":
                        lines.append(f"{qid}\t{docid}\t{s}\n")
                    else:
                        lines.append(f"{qid} Q0 {docid} {rank} {s} {tag}\n")
                f.write("".join(lines))
                n += len(lines)
    return n
