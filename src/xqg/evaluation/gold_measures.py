"""Gold-passage measures from qrels, beside R@kt: MRR@10 and Recall@k of the passages the data marks as gold
(the synthetic world and XQuAD-R write qrels). R@kt saturates when any passage holding the answer string is
found; these move where it sits at its ceiling, because they ask for *the* gold passage and its rank.

Per question (a question without qrels is not counted; one missing from the run scores 0): reciprocal rank of the
first gold passage within the first ``mrr_depth`` (0 when none), and the share of its gold passages within the
first k, as trec_eval defines them (computed by :mod:`xqg.evaluation.qrels_measures`). Per language the mean, in
percent like R@kt; macro = mean over languages. They ride on :class:`xqg.evaluation.result.EvalResult`
(``measures``), so tables, ``results.json`` and trial records carry them, and :func:`compare_measures` tests them
with the same paired tests and macro weighting as R@kt (:func:`xqg.evaluation.significance.compare`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from xqg.data.formats.qrels import Qrels
from xqg.evaluation.qrels_measures import qrels_measures
from xqg.evaluation.result import EvalResult, metric_name
from xqg.evaluation.significance import Comparison, compare


@dataclass(frozen=True)
class GoldOptions:
    """Which measures: MRR at ``mrr_depth`` (0: none) and Recall at each of ``recall_ks``."""

    mrr_depth: int = 10
    recall_ks: tuple[int, ...] = (1, 5, 20, 100)

    def names(self) -> list[str]:
        return ([f"MRR@{self.mrr_depth}"] if self.mrr_depth else []) + [f"Recall@{k}" for k in self.recall_ks]


def gold_values(
    run: Mapping[str, Sequence[Any]], qrels: Qrels, qids: Iterable[str], options: GoldOptions = GoldOptions()
) -> dict[str, dict[str, float]]:
    """measure -> qid -> value in [0, 1] for every qid with gold passages (a qid missing from the run scores 0),
    computed by :func:`xqg.evaluation.qrels_measures.qrels_measures` (trec_eval's definitions)."""
    names = options.names()
    if not names:
        return {}
    scores = qrels_measures(run, qrels, names, qids=qids)
    return {name: dict(scores.per_query[name]) for name in scores.measures}


def with_gold(
    result: EvalResult, run: Mapping[str, Sequence[Any]], qrels: Qrels, options: GoldOptions = GoldOptions()
) -> EvalResult:
    """``result`` with the gold measures of the questions it counted."""
    values = gold_values(run, qrels, result.question_lang, options)
    return replace(result, measures={**result.measures, **values})


def _as_hits(result: EvalResult, names: Sequence[str]) -> EvalResult:
    """The measures as if they were R@kt hits at k = 0, 1, ... (what :func:`compare` tests), on the questions
    that have them."""
    qids = set(result.measures[names[0]]) if names else set()
    lang = {q: result.question_lang[q] for q in result.question_lang if q in qids}
    counts: dict[str, int] = {}
    for x in lang.values():
        counts[x] = counts.get(x, 0) + 1
    hits: dict[int, dict[str, Any]] = {i: dict(result.measures[n]) for i, n in enumerate(names)}
    return EvalResult(ks=tuple(range(len(names))), counts=counts, hits=hits, question_lang=lang)


def compare_measures(
    a: EvalResult,
    b: EvalResult,
    *,
    tests: Sequence[str],
    permutations: int,
    seed: int,
    level: float,
    name_a: str = "A",
    name_b: str = "B",
) -> Comparison | None:
    """Paired tests of ``b``'s gold measures against ``a``'s, per language and macro (None when there are none);
    the per-question values are tested exactly as R@kt's hits are (same tests, same macro weighting)."""
    names = [n for n in a.measures if n in b.measures and a.measures[n]]
    if not names:
        return None
    comp = compare(
        _as_hits(a, names),
        _as_hits(b, names),
        tests=tests,
        permutations=permutations,
        seed=seed,
        level=level,
        name_a=name_a,
        name_b=name_b,
    )
    comp.tests = {n: comp.tests[metric_name(i)] for i, n in enumerate(names)}
    return comp
