"""XOR-TyDi's human question translations: ``<folder>/{xx}-en/{xx}.txt`` and ``{xx}-en/en.txt``, line-aligned
(line i of ``en.txt`` translates line i of ``xx.txt``). The files carry no question ids, so the table is keyed
by (language, question text with whitespace collapsed); :mod:`xqg.data.translations` joins it to training
queries."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from xqg.core.errors import XqgInputError
from xqg.core.io import open_text
from xqg.core.languages import normalize_lang


def text_key(text: str) -> str:
    """The join key of a question text: whitespace collapsed (the released files differ in spacing only)."""
    return " ".join(text.split())


def _lines(path: Path) -> list[str]:
    with open_text(path, what="translation file") as f:
        lines = f.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def read_parallel_folder(
    folder: str | Path, languages: Iterable[str] | None = None
) -> dict[tuple[str, str], str]:
    """``{(lang, text_key(question)): English translation}`` from every ``{xx}-en`` pair of ``folder`` (or only
    ``languages``). A pair whose two files differ in length, or an empty translation, is an error naming the
    file and line."""
    root = Path(folder)
    if not root.is_dir():
        raise XqgInputError("not a folder of {xx}-en translation pairs", path=root)
    wanted = {normalize_lang(x) for x in languages} if languages is not None else None
    table: dict[tuple[str, str], str] = {}
    pairs = sorted(p for p in root.iterdir() if p.is_dir() and p.name.endswith("-en"))
    if not pairs:
        raise XqgInputError("no {xx}-en translation folders", path=root)
    for pair in pairs:
        lang = normalize_lang(pair.name.removesuffix("-en"))
        if wanted is not None and lang not in wanted:
            continue
        src_path, en_path = pair / f"{pair.name.removesuffix('-en')}.txt", pair / "en.txt"
        src, en = _lines(src_path), _lines(en_path)
        if len(src) != len(en):
            raise XqgInputError(
                f"{len(en)} lines, but {src_path.name} has {len(src)}: the files must be line-aligned",
                path=en_path,
                line=min(len(src), len(en)) + 1,
            )
        for lineno, (q, t) in enumerate(zip(src, en, strict=True), start=1):
            if q.strip() and not t.strip():
                raise XqgInputError("empty translation", path=en_path, line=lineno)
            if q.strip():
                table[(lang, text_key(q))] = t.strip()
    return table
