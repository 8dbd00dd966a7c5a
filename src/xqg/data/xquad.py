"""XQuAD as parallel data: the same 1,190 questions and 240 paragraphs in 12 languages (``xquad.<lang>.json``,
SQuAD v1.1 format), aligned by question id and by (article, paragraph) position. The alignment study reads it to
compare a question with its English version and with its paragraph. Files that are not parallel (a question
missing, in another paragraph, or extra) fail at once, naming the file and the field.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xqg.core.errors import MissingResourceError, XqgInputError
from xqg.core.io import open_text
from xqg.core.languages import normalize_lang
from xqg.data.records import Passage


@dataclass(frozen=True)
class ParallelXquad:
    """Questions and paragraphs per language, row-aligned: ``questions[lang][i]`` is question ``qids[i]``;
    ``paragraphs[lang][j]`` is paragraph ``j``; ``gold[i]`` is the paragraph row of question ``i``."""

    languages: tuple[str, ...]
    qids: tuple[str, ...]
    gold: tuple[int, ...]
    questions: dict[str, tuple[str, ...]]
    paragraphs: dict[str, tuple[Passage, ...]]


def _read(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise MissingResourceError(f"XQuAD file {path} not found (study.alignment.source)")
    try:
        with open_text(path, what="XQuAD file") as f:
            data = json.loads(f.read())
    except json.JSONDecodeError as e:
        raise XqgInputError(f"malformed JSON ({e.msg})", path=path, line=e.lineno) from None
    except UnicodeDecodeError as e:
        raise XqgInputError(f"not valid UTF-8 ({e.reason})", path=path) from None
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise XqgInputError("expected a SQuAD-format object with a 'data' list", path=path, field="data")
    return data["data"]


def _language(
    path: Path, max_articles: int | None
) -> tuple[list[tuple[str, str, int]], list[Passage], list[str]]:
    """``[(qid, question, paragraph row)]``, the paragraphs, and each paragraph's ``article/paragraph`` key."""
    qas, paragraphs, keys = [], [], []
    articles = _read(path)
    for a, art in enumerate(articles[:max_articles] if max_articles is not None else articles):
        title = str(art.get("title", f"article {a}")).replace("_", " ")
        for p, para in enumerate(art.get("paragraphs") or []):
            where = f"data[{a}].paragraphs[{p}]"
            context = para.get("context")
            if not isinstance(context, str) or not context.strip():
                raise XqgInputError("missing paragraph context", path=path, field=f"{where}.context")
            row = len(paragraphs)
            paragraphs.append(Passage(f"xquad{a}-{p}", title, " ".join(context.split())))
            keys.append(f"{a}/{p}")
            for j, qa in enumerate(para.get("qas") or []):
                qid, text = qa.get("id"), qa.get("question")
                if not isinstance(qid, str) or not isinstance(text, str) or not text.strip():
                    raise XqgInputError("question without id or text", path=path, field=f"{where}.qas[{j}]")
                qas.append((qid, " ".join(text.split()), row))
    return qas, paragraphs, keys


def load_parallel_xquad(
    folder: str | Path, languages: Sequence[str], pivot: str = "en", max_articles: int | None = None
) -> ParallelXquad:
    """Read ``xquad.<lang>.json`` for the pivot and ``languages`` (the first ``max_articles`` articles), checked
    to be parallel with the pivot file."""
    root = Path(folder)
    pivot = normalize_lang(pivot)
    langs = tuple(dict.fromkeys([pivot, *(normalize_lang(x) for x in languages)]))
    if max_articles is not None and max_articles < 1:
        raise XqgInputError(f"must be >= 1, got {max_articles}", field="study.alignment.max_articles")
    base_qas, base_paras, base_keys = _language(root / f"xquad.{pivot}.json", max_articles)
    qids = tuple(q for q, _, _ in base_qas)
    gold = tuple(r for _, _, r in base_qas)
    questions = {pivot: tuple(t for _, t, _ in base_qas)}
    paragraphs = {pivot: tuple(base_paras)}
    for lang in langs[1:]:
        path = root / f"xquad.{lang}.json"
        qas, paras, keys = _language(path, max_articles)
        if keys != base_keys:
            raise XqgInputError(
                f"{len(keys)} paragraphs, not parallel with the {len(base_keys)} of xquad.{pivot}.json",
                path=path,
                field="data",
            )
        by_id = {q: (t, r) for q, t, r in qas}
        missing = [q for q in qids if q not in by_id]
        moved = [q for q, r in zip(qids, gold, strict=True) if q in by_id and by_id[q][1] != r]
        if missing or moved or len(by_id) != len(qids):
            what = (
                f"question {missing[0]!r} is missing"
                if missing
                else f"question {moved[0]!r} sits in another paragraph"
                if moved
                else f"{len(by_id) - len(qids)} questions are not in xquad.{pivot}.json"
            )
            raise XqgInputError(f"not parallel with xquad.{pivot}.json: {what}", path=path, field="qas")
        questions[lang] = tuple(by_id[q][0] for q in qids)
        paragraphs[lang] = tuple(paras)
    return ParallelXquad(langs, qids, gold, questions, paragraphs)
