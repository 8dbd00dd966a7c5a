"""Qrels-based IR measures (MRR@10, Recall@k, nDCG@10, mAP@20, ...) through ``ir_measures`` (trec_eval's
definitions via ``pytrec_eval``), so the numbers are the ones XQuAD-R / LAReQA and TREC users compute themselves.

A thin typed wrapper: runs as the pipeline holds them (qid -> docids best first, or ``(docid, score)`` pairs, or
docid -> score), qrels as :func:`xqg.data.formats.qrels.read_qrels` returns them (qid -> docid -> relevance > 0).

Conventions (the trec_eval ``-c`` ones, stated because they change averages):
- a question is scored when the qrels give it at least one relevant passage (relevance > 0);
- a scored question missing from the run (or with an empty ranking) scores 0 on every measure;
- a run question without a relevant passage is not scored (listed in ``unjudged``);
- a ranked list keeps its order: it is handed to trec_eval as strictly decreasing scores (a duplicate docid keeps
  its first, best rank), so trec_eval's tie-breaking by docid never reorders it.

Names: ``MRR@k`` (``RR@k``), ``Recall@k`` (``R@k``), ``nDCG@k``, ``mAP@k`` (``AP@k``), ``P@k``, ``Success@k`` and any
other ``ir_measures`` measure string; results are keyed by the name as this module spells it (the left column).
Values are in [0, 1], as ``ir_measures`` gives them; tables multiply by 100 like R@kt.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import ir_measures

from xqg.core.errors import XqgInputError

#: the measures XQuAD-R / LAReQA and MS MARCO-style reports use
DEFAULT_MEASURES: tuple[str, ...] = (
    "MRR@10",
    "Recall@1",
    "Recall@5",
    "Recall@20",
    "Recall@100",
    "nDCG@10",
    "mAP@20",
)
# this module's spelling -> ir_measures' spelling (same measure)
_TO_IR = {"MRR": "RR", "Recall": "R", "mAP": "AP"}
_FROM_IR = {v: k for k, v in _TO_IR.items()}

Ranking = Sequence[str] | Sequence[tuple[str, float]] | Sequence[list[Any]] | Mapping[str, float]


@dataclass(frozen=True)
class QrelsScores:
    """Per-question values and their means.

    ``per_query``: measure -> qid -> value in [0, 1] (every scored question, zeros for those the run misses);
    ``aggregate``: measure -> mean over the scored questions (0 when none); ``queries``: the scored qids, in
    qrels order; ``missing``: scored qids with no (or an empty) ranking; ``unjudged``: run qids without a
    relevant passage (not scored)."""

    measures: tuple[str, ...]
    per_query: dict[str, dict[str, float]]
    aggregate: dict[str, float]
    queries: tuple[str, ...]
    missing: tuple[str, ...] = ()
    unjudged: tuple[str, ...] = ()

    def by_group(self, group_of: Mapping[str, str]) -> dict[str, dict[str, float]]:
        """group (e.g. language) -> measure -> mean over that group's scored questions, plus ``macro`` (mean over
        the groups, each weighing the same, as R@kt's macro). A scored qid missing from ``group_of`` is an error."""
        lost = [q for q in self.queries if q not in group_of]
        if lost:
            raise XqgInputError(f"{len(lost)} scored questions have no group (first: {', '.join(lost[:5])})")
        groups: dict[str, list[str]] = {}
        for q in self.queries:
            groups.setdefault(group_of[q], []).append(q)
        out = {
            g: {m: statistics.fmean(self.per_query[m][q] for q in qids) for m in self.measures}
            for g, qids in groups.items()
        }
        if out:
            out["macro"] = {m: statistics.fmean(v[m] for v in out.values()) for m in self.measures}
        return out


def canonical_name(name: str) -> str:
    """This module's spelling of a measure given either way (``RR@10`` -> ``MRR@10``, ``R@5`` -> ``Recall@5``,
    ``AP@20`` -> ``mAP@20``); one :class:`XqgInputError` naming it when ``ir_measures`` does not know it."""
    return _display(_parse(name))


def _ir_name(name: str) -> str:
    head, sep, tail = name.partition("@")
    return _TO_IR.get(head, head) + sep + tail


def _parse(name: str) -> Any:
    if not isinstance(name, str) or not name.strip():
        raise XqgInputError(f"a measure name must be a non-empty string, got {name!r}", field="measures")
    try:
        return ir_measures.parse_measure(_ir_name(name.strip()))
    except (ValueError, NameError, SyntaxError, TypeError, AttributeError) as e:
        raise XqgInputError(
            f"unknown measure {name!r} ({e}); e.g. {', '.join(DEFAULT_MEASURES)} or any ir_measures name",
            field="measures",
        ) from None


def _display(measure: Any) -> str:
    text = str(measure)
    head, sep, tail = text.partition("@")
    return _FROM_IR.get(head, head) + sep + tail


def as_scores(ranking: Ranking) -> dict[str, float]:
    """docid -> score for trec_eval: a mapping as it is; a ranked list (docids or ``(docid, score)`` pairs, best
    first) as strictly decreasing scores, so its order is kept whatever the original scores."""
    if isinstance(ranking, Mapping):
        return {str(d): float(s) for d, s in ranking.items()}
    out: dict[str, float] = {}
    n = len(ranking)
    for i, item in enumerate(ranking):
        docid = str(item[0]) if isinstance(item, tuple | list) else str(item)
        out.setdefault(docid, float(n - i))
    return out


def qrels_measures(
    run: Mapping[str, Ranking],
    qrels: Mapping[str, Mapping[str, int]],
    measures: Sequence[str] = DEFAULT_MEASURES,
    *,
    qids: Iterable[str] | None = None,
) -> QrelsScores:
    """Score ``run`` against ``qrels`` with ``measures`` (see the module's conventions). ``qids`` restricts the
    scored questions (e.g. to those a questions file holds); by default every qrels question with a relevant
    passage is scored."""
    if not measures:
        raise XqgInputError("no measure asked for", field="measures")
    parsed = [_parse(m) for m in measures]
    names = tuple(_display(p) for p in parsed)
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise XqgInputError(f"measure(s) asked for twice: {', '.join(dupes)}", field="measures")
    judged = {str(q): {str(d): int(r) for d, r in rel.items() if int(r) > 0} for q, rel in qrels.items()}
    judged = {q: rel for q, rel in judged.items() if rel}
    wanted = None if qids is None else {str(q) for q in qids}
    queries = tuple(q for q in judged if wanted is None or q in wanted)
    scores = {str(q): as_scores(r) for q, r in run.items()}
    ranked = {q: scores[q] for q in queries if scores.get(q)}
    per_query: dict[str, dict[str, float]] = {n: dict.fromkeys(queries, 0.0) for n in names}
    by_measure = dict(zip(parsed, names, strict=True))
    if ranked:
        sub_qrels = {q: judged[q] for q in ranked}
        for metric in ir_measures.iter_calc(parsed, sub_qrels, ranked):
            per_query[by_measure[metric.measure]][metric.query_id] = float(metric.value)
    aggregate = {n: statistics.fmean(v.values()) if v else 0.0 for n, v in per_query.items()}
    return QrelsScores(
        measures=names,
        per_query=per_query,
        aggregate=aggregate,
        queries=queries,
        missing=tuple(q for q in queries if q not in ranked),
        unjudged=tuple(q for q in scores if q not in judged and (wanted is None or q in wanted)),
    )
