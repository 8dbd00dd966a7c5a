"""Qrels measures (``xqg.evaluation.qrels_measures``) against values computed by hand from trec_eval's definitions,
its conventions (missing / unjudged questions, ranked order kept), and, opt-in, parity with ranx."""

from __future__ import annotations

import math
import os

import pytest

from xqg.core.errors import XqgInputError
from xqg.evaluation.gold_measures import GoldOptions, gold_values
from xqg.evaluation.qrels_measures import DEFAULT_MEASURES, as_scores, canonical_name, qrels_measures

QRELS = {"q1": {"d2": 1, "d5": 1}, "q2": {"a": 1}, "q4": {"x": 2, "y": 1}, "q5": {"n": 0}}
RUN = {
    "q1": ["d1", "d2", "d3", "d4", "d5", "d6"],
    "q3": ["z"],  # no qrels: not scored
    "q4": [("y", 0.1), ("x", 0.9)],  # list order wins over the scores: y is first
}
MEASURES = ["MRR@10", "Recall@1", "Recall@5", "P@5", "mAP@20", "nDCG@10"]


def _log2(x: float) -> float:
    return math.log(x, 2)


def test_hand_computed_values_and_conventions():
    s = qrels_measures(RUN, QRELS, MEASURES)
    # q5 has no relevant passage: not scored; q2 is missing from the run: zeros; q3 is unjudged
    assert s.queries == ("q1", "q2", "q4") and s.missing == ("q2",) and s.unjudged == ("q3",)
    q1 = {m: s.per_query[m]["q1"] for m in MEASURES}
    ndcg_q1 = (1 / _log2(3) + 1 / _log2(6)) / (1 + 1 / _log2(3))
    assert q1 == pytest.approx(
        {
            "MRR@10": 1 / 2,
            "Recall@1": 0.0,
            "Recall@5": 1.0,
            "P@5": 2 / 5,
            "mAP@20": (1 / 2 + 2 / 5) / 2,
            "nDCG@10": ndcg_q1,
        },
        abs=1e-12,
    )
    assert all(s.per_query[m]["q2"] == 0.0 for m in MEASURES)
    # graded relevance: gain = relevance (trec_eval's nDCG); y (rel 1) is ranked above x (rel 2)
    ndcg_q4 = (1 + 2 / _log2(3)) / (2 + 1 / _log2(3))
    assert s.per_query["nDCG@10"]["q4"] == pytest.approx(ndcg_q4, abs=1e-12)
    assert s.per_query["Recall@1"]["q4"] == 0.5 and s.per_query["MRR@10"]["q4"] == 1.0
    assert s.aggregate["MRR@10"] == pytest.approx((0.5 + 0 + 1) / 3)
    groups = s.by_group({"q1": "ar", "q2": "bn", "q4": "ar"})
    assert groups["ar"]["MRR@10"] == pytest.approx(0.75) and groups["bn"]["MRR@10"] == 0.0
    assert groups["macro"]["MRR@10"] == pytest.approx(0.375)  # languages weigh the same, as R@kt's macro
    with pytest.raises(XqgInputError, match="no group"):
        s.by_group({"q1": "ar"})


def test_cutoffs_restriction_and_score_mappings():
    deep = {"q": {"d11": 1}}
    ranked = {"q": [f"d{i}" for i in range(1, 15)]}
    s = qrels_measures(ranked, deep, ["MRR@10", "RR", "Recall@10", "Recall@20"])
    assert s.per_query["MRR@10"]["q"] == 0.0 and s.per_query["MRR"]["q"] == pytest.approx(1 / 11)
    assert (s.per_query["Recall@10"]["q"], s.per_query["Recall@20"]["q"]) == (0.0, 1.0)
    # a mapping is taken by its scores; a duplicate docid in a list keeps its first (best) rank
    assert qrels_measures({"q": {"a": 1.0, "d11": 2.0}}, deep, ["MRR@10"]).aggregate["MRR@10"] == 1.0
    assert as_scores(["a", "b", "a"]) == {"a": 3.0, "b": 2.0}
    only = qrels_measures(RUN, QRELS, ["MRR@10"], qids=["q1", "q3"])
    assert only.queries == ("q1",) and only.unjudged == ("q3",)
    assert qrels_measures({}, {}, ["MRR@10"]).aggregate == {"MRR@10": 0.0}


def test_names_and_bad_measures():
    assert [canonical_name(m) for m in ("RR@10", "R@5", "AP@20", "nDCG@10", "MRR@10")] == [
        "MRR@10",
        "Recall@5",
        "mAP@20",
        "nDCG@10",
        "MRR@10",
    ]
    assert "mAP@20" in DEFAULT_MEASURES and "MRR@10" in DEFAULT_MEASURES
    with pytest.raises(XqgInputError, match=r"field 'measures': unknown measure 'MRR@ten'"):
        qrels_measures(RUN, QRELS, ["MRR@ten"])
    with pytest.raises(XqgInputError, match="asked for twice: MRR@10"):
        qrels_measures(RUN, QRELS, ["MRR@10", "RR@10"])
    with pytest.raises(XqgInputError, match="no measure"):
        qrels_measures(RUN, QRELS, [])


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("XQG_TEST_RANX") != "1",
    reason="opt-in (numba compiles ranx's metrics, ~30-100 s): XQG_TEST_RANX=1 with `pip install .[ir]`",
)
def test_parity_with_ranx():
    ranx = pytest.importorskip("ranx")
    qrels = {f"q{i}": {f"d{(i * 7 + j) % 50}": 1 + (j % 2) for j in range(1 + i % 4)} for i in range(40)}
    run = {f"q{i}": [f"d{(i * 3 + j * 11) % 50}" for j in range(30)] for i in range(40)}
    pairs = {
        "MRR@10": "mrr@10",
        "Recall@5": "recall@5",
        "Recall@20": "recall@20",
        "nDCG@10": "ndcg@10",
        "mAP@20": "map@20",
    }
    ours = qrels_measures(run, qrels, list(pairs))
    ranx_run = ranx.Run({q: as_scores(r) for q, r in run.items()})
    ranx.evaluate(ranx.Qrels(qrels), ranx_run, list(pairs.values()))  # fills ranx_run.scores per query
    for ours_name, ranx_name in pairs.items():
        theirs = {q: float(v) for q, v in ranx_run.scores[ranx_name].items()}
        assert ours.per_query[ours_name] == pytest.approx(theirs, abs=1e-9), ours_name


def test_agrees_with_the_pipelines_gold_measures():
    """The pipeline's own MRR/Recall of gold passages (xqg.evaluation.gold_measures) and trec_eval's agree."""
    qrels = {f"q{i}": {f"d{(i * 7 + j) % 30}": 1 for j in range(1 + i % 3)} for i in range(25)}
    run = {f"q{i}": [(f"d{(i * 3 + j * 11) % 30}", 30.0 - j) for j in range(20)] for i in range(0, 25, 2)}
    ours = qrels_measures(run, qrels, ["MRR@10", "Recall@1", "Recall@5", "Recall@20"], qids=qrels)
    gold = gold_values(run, qrels, qrels, GoldOptions(mrr_depth=10, recall_ks=(1, 5, 20)))
    assert gold.keys() == ours.per_query.keys()
    for name, values in gold.items():
        assert values == pytest.approx(ours.per_query[name], abs=1e-12), name
