"""Seeded query perturbations for robustness studies: the same seed gives the same texts, on any machine, in any
question order (each question draws from its own generator, seeded by the perturbation, rate, seed and question
id). A perturbed question keeps its id, language and answers; only its text changes.

Words are whitespace tokens (in unsegmented scripts, e.g. Japanese or Thai, one token can be a whole clause);
``rate`` is the share of words touched (of characters for ``char_noise``):

- ``typo``: one edit in the word: two neighbouring characters swapped, one dropped, or one doubled;
- ``char_noise``: a character replaced by another character of the same question (same script, same alphabet);
- ``transliterate``: the word written in Latin script (``anyascii``, Unicode's transliteration tables);
- ``code_switch``: the word replaced by the word at the same relative place in the question's English version
  (a positional, not a word-aligned, switch; questions without an English version stay unchanged);
- ``no_diacritics``: combining marks (Unicode category Mn after NFD) dropped: accents, Arabic harakat, kana
  dakuten, and in Indic scripts the non-spacing vowel signs and virama, as careless typing or ASCII-folding does;
- ``word_order``: the word swapped with its right neighbour (local reordering).
"""

from __future__ import annotations

import hashlib
import random
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace

from anyascii import anyascii

from xqg.core.errors import XqgInputError
from xqg.data.records import Question

PERTURBATIONS = ("typo", "char_noise", "transliterate", "code_switch", "no_diacritics", "word_order")
PIVOT = "en"


def _rng(seed: int, kind: str, rate: float, qid: str) -> random.Random:
    digest = hashlib.sha256(f"{seed}\x1f{kind}\x1f{rate!r}\x1f{qid}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _typo(word: str, rng: random.Random) -> str:
    if len(word) < 2:
        return word + word
    i = rng.randrange(len(word) - 1)
    op = rng.randrange(3)
    if op == 0:
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if op == 1:
        return word[:i] + word[i + 1 :]
    return word[: i + 1] + word[i] + word[i + 1 :]


def _strip_marks(word: str) -> str:
    return unicodedata.normalize(
        "NFC", "".join(c for c in unicodedata.normalize("NFD", word) if unicodedata.category(c) != "Mn")
    )


WORD_OPS: dict[str, Callable[[str, random.Random], str]] = {
    "typo": _typo,
    "transliterate": lambda w, rng: anyascii(w) or w,
    "no_diacritics": lambda w, rng: _strip_marks(w),
}


def perturb_text(text: str, kind: str, rate: float, rng: random.Random, english: str | None = None) -> str:
    """``text`` with perturbation ``kind`` at ``rate``, drawing from ``rng``."""
    if kind not in PERTURBATIONS:
        raise XqgInputError(f"unknown perturbation {kind!r}; choose from {list(PERTURBATIONS)}")
    if not 0.0 <= rate <= 1.0:
        raise XqgInputError(f"rate must be in [0, 1], got {rate!r}")
    words = text.split()
    if kind == "char_noise":
        alphabet = sorted({c for c in text if not c.isspace()})
        return "".join(rng.choice(alphabet) if not c.isspace() and rng.random() < rate else c for c in text)
    if kind == "word_order":
        i = 0
        while i < len(words) - 1:
            if rng.random() < rate:
                words[i], words[i + 1] = words[i + 1], words[i]
                i += 1
            i += 1
        return " ".join(words)
    if kind == "code_switch":
        target = english.split() if english else []
        if not target:
            return text
        n, m = len(words), len(target)
        return " ".join(
            target[round(i * (m - 1) / max(n - 1, 1))] if rng.random() < rate else w
            for i, w in enumerate(words)
        )
    op = WORD_OPS[kind]
    return " ".join(op(w, rng) if rng.random() < rate else w for w in words)


def perturb_questions(
    questions: Iterable[Question],
    kind: str,
    rate: float,
    seed: int,
    english: Mapping[str, str] | None = None,
) -> list[Question]:
    """Every question with its text perturbed (id, language, answers and split kept); ``english`` maps a qid to
    its English version (``code_switch``)."""
    english = english or {}
    return [
        replace(q, text=perturb_text(q.text, kind, rate, _rng(seed, kind, rate, q.qid), english.get(q.qid)))
        for q in questions
    ]


def english_versions(questions: Sequence[Question]) -> dict[str, str]:
    """qid -> text of its English version, for data whose parallel questions share an id stem with the language
    as suffix (``<stem>-<lang>``, the synthetic world's and XQuAD-R's ids): ``syn-3-capital-ja`` ->
    ``syn-3-capital-en``. Questions without one are left out."""
    pivot = {q.qid.removesuffix(f"-{PIVOT}"): q.text for q in questions if q.lang == PIVOT}
    out = {}
    for q in questions:
        stem, sep, lang = q.qid.rpartition("-")
        if sep and lang == q.lang and q.lang != PIVOT and stem in pivot:
            out[q.qid] = pivot[stem]
    return out
