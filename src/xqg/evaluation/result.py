"""What scoring returns: R@kt per language and macro, counts, and per-question hits (for significance tests).

Per language ``hits / count * 100``, as the official script computes it; macro = mean over the languages with
at least one counted question.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from xqg.core.languages import XOR_LANGUAGES

_FIRST_IDS = 5  # ids named in a message


def lang_order(langs: Iterable[str]) -> list[str]:
    """The paper's column order (ar bn fi ja ko ru te) first, any other language after, alphabetically."""
    s = set(langs)
    return [x for x in XOR_LANGUAGES if x in s] + sorted(s - set(XOR_LANGUAGES))


def metric_name(k: int) -> str:
    return f"R@{k}kt"


def first_ids(ids: Sequence[str]) -> str:
    """The first few ids, for a message, with how many more there are."""
    more = f", ... (+{len(ids) - _FIRST_IDS} more)" if len(ids) > _FIRST_IDS else ""
    return ", ".join(ids[:_FIRST_IDS]) + more


def mismatch_message(mm: Sequence[tuple[str, str, str]]) -> str:
    ex = ", ".join(f"{q} ({p} vs {f})" for q, p, f in mm[:_FIRST_IDS])
    return (
        f"{len(mm)} predictions give a language other than the question file's; scored under the prediction's "
        f"language as the official script does: {ex}"
    )


@dataclass
class EvalResult:
    """R@kt per language and macro, counts, and per-question hits (for significance tests)."""

    ks: tuple[int, ...]
    counts: dict[str, int]
    hits: dict[int, dict[str, bool]]  # k -> qid -> hit (counted questions, scoring order)
    question_lang: dict[str, str]  # qid -> language it was scored under
    missing_ids: list[str] = field(default_factory=list)
    unknown_ids: list[str] = field(default_factory=list)
    skipped_ids: list[str] = field(default_factory=list)  # yes/no-only questions
    # (qid, prediction's lang, question file's lang) where they disagree
    lang_mismatch: list[tuple[str, str, str]] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)
    kind: str = "predictions"  # what was scored: "predictions" or "run"
    stats: dict[str, float] = field(default_factory=dict)  # timings and tokenisation counts
    # gold-passage measures (xqg.evaluation.gold_measures): name -> qid -> value in [0, 1], questions with qrels
    measures: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def languages(self) -> list[str]:
        return lang_order(lang for lang, n in self.counts.items() if n > 0)

    @property
    def per_language(self) -> dict[int, dict[str, float]]:
        """k -> language -> R@kt in percent, computed as the official script does: hits / count * 100."""
        out: dict[int, dict[str, float]] = {}
        for k in self.ks:
            h: dict[str, int] = dict.fromkeys(self.counts, 0)
            for qid, hit in self.hits[k].items():
                if hit:
                    h[self.question_lang[qid]] += 1
            out[k] = {lang: (h[lang] / self.counts[lang]) * 100 for lang in self.languages}
        return out

    @property
    def macro(self) -> dict[int, float]:
        """k -> mean over languages with count > 0 (``statistics.mean``: exactly rounded, so order-free)."""
        return {k: statistics.mean(v.values()) for k, v in self.per_language.items()}

    def to_json(self, details: bool = False) -> dict[str, Any]:
        """``{"R@2kt": {lang: .., "macro": .., "count": {lang: n}}, ...}``; ``details`` adds the ids that were
        missing, unknown, skipped (yes/no) and the language disagreements."""
        per = self.per_language
        macro = self.macro
        out: dict[str, Any] = {}
        for k in self.ks:
            block: dict[str, Any] = dict(per[k])
            block["macro"] = macro[k]
            block["count"] = {lang: self.counts[lang] for lang in self.languages}
            out[metric_name(k)] = block
        for name, values in self.measures.items():
            out[name] = self._measure_block(values)
        if details:
            out["details"] = {
                "missing_ids": list(self.missing_ids),
                "unknown_ids": list(self.unknown_ids),
                "skipped_yes_no_ids": list(self.skipped_ids),
                "lang_mismatch": [
                    {"id": q, "prediction": p, "questions": f} for q, p, f in self.lang_mismatch
                ],
                "sources": dict(self.sources),
            }
        return out

    def _measure_block(self, values: dict[str, float]) -> dict[str, Any]:
        """A gold measure as R@kt's block: mean per language in percent, macro, counts (questions with qrels)."""
        sums: dict[str, float] = {}
        n: dict[str, int] = {}
        for qid, v in values.items():
            lang = self.question_lang[qid]
            sums[lang] = sums.get(lang, 0.0) + v
            n[lang] = n.get(lang, 0) + 1
        langs = lang_order(n)
        block: dict[str, Any] = {lang: sums[lang] / n[lang] * 100 for lang in langs}
        block["macro"] = statistics.mean(block[lang] for lang in langs) if langs else 0.0
        block["count"] = {lang: n[lang] for lang in langs}
        return block

    def notes(self) -> list[str]:
        """Human-readable facts worth printing under the table (allowed missing/unknown ids, lang warnings)."""
        out = []
        if self.missing_ids:
            out.append(
                f"{len(self.missing_ids)} questions had no {'run entry' if self.kind == 'run' else 'prediction'} "
                "and were not scored (allowed): " + first_ids(self.missing_ids)
            )
        if self.unknown_ids:
            out.append(
                f"{len(self.unknown_ids)} predictions have ids unknown to the question file and were ignored "
                f"(allowed): " + first_ids(self.unknown_ids)
            )
        if self.lang_mismatch:
            out.append(mismatch_message(self.lang_mismatch))
        return out
