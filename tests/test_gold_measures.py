"""Gold-passage measures from qrels (MRR@10, Recall@k) on hand-computed cases, their paired tests, the qrels
reader and their place in the paper table."""

from __future__ import annotations

from pathlib import Path

import pytest

from xqg.core.errors import XqgInputError
from xqg.data.formats.qrels import read_qrels
from xqg.evaluation.gold_measures import (
    GoldOptions,
    compare_measures,
    gold_values,
    with_gold,
)
from xqg.evaluation.result import EvalResult
from xqg.evaluation.tables import paper_table

TESTS = ("ttest", "randomization")


def _result(langs: dict[str, str]) -> EvalResult:
    return EvalResult(
        ks=(2,),
        counts={x: list(langs.values()).count(x) for x in set(langs.values())},
        hits={2: dict.fromkeys(langs, True)},
        question_lang=dict(langs),
        kind="run",
    )


def test_gold_values_per_question() -> None:
    run = {
        "q1": [("a", 3.0), ("g1", 2.0)],
        "q2": [("g2", 1.0)],
        "q4": [("x", 1.0)],
        "q5": ["a", "b", "c", "g5", "h5"],  # docids best first; two gold passages
        "q6": [f"x{i}" for i in range(10)] + ["g6"],  # the gold passage 11th: beyond MRR@10
    }
    qrels = {
        "q1": {"g1": 1},
        "q2": {"g2": 1},
        "q3": {"g3": 1},
        "q5": {"g5": 1, "h5": 2, "z": 0},
        "q6": {"g6": 1},
    }
    v = gold_values(run, qrels, ["q1", "q2", "q3", "q4", "q5", "q6"], GoldOptions(10, (1, 4)))
    # q3 has no run entry: scores 0; q4 has no qrels: not counted; relevance 0 is not gold
    assert v == {
        "MRR@10": {"q1": 0.5, "q2": 1.0, "q3": 0.0, "q5": 0.25, "q6": 0.0},
        "Recall@1": {"q1": 0.0, "q2": 1.0, "q3": 0.0, "q5": 0.0, "q6": 0.0},
        "Recall@4": {"q1": 1.0, "q2": 1.0, "q3": 0.0, "q5": 0.5, "q6": 0.0},
    }
    assert gold_values(run, qrels, ["q1"], GoldOptions(0, ())) == {}
    assert GoldOptions(0, (20,)).names() == ["Recall@20"]


def test_result_json_per_language_and_macro() -> None:
    res = _result({"q1": "ja", "q2": "ja", "q3": "ar"})
    run = {"q1": ["g1"], "q2": ["x", "x2", "g2"], "q3": ["x", "g3"]}
    qrels = {"q1": {"g1": 1}, "q2": {"g2": 1}, "q3": {"g3": 1}}
    out = with_gold(res, run, qrels, GoldOptions(10, (1,))).to_json()
    assert out["MRR@10"]["ja"] == pytest.approx((1 + 1 / 3) / 2 * 100)
    assert out["MRR@10"]["ar"] == pytest.approx(50.0)
    assert out["MRR@10"]["macro"] == pytest.approx(((1 + 1 / 3) / 2 * 100 + 50) / 2)
    assert out["Recall@1"] == {"ar": 0.0, "ja": 50.0, "macro": 25.0, "count": {"ar": 1, "ja": 2}}
    assert "R@2kt" in out  # R@kt untouched
    table = paper_table({"xDR": out}).splitlines()
    assert [r.split()[1] for r in table[2:5]] == ["R@2kt", "MRR@10", "Recall@1"]  # R@kt first


def test_compare_measures_uses_the_paired_tests() -> None:
    langs = {f"q{i}": ("ja" if i % 2 else "ar") for i in range(40)}
    qrels = {q: {f"g{q}": 1} for q in langs}
    worse = {q: ["x", "y", "z", f"g{q}"] for q in langs}
    better = {q: [f"g{q}"] for q in langs}
    opts = GoldOptions(10, (1, 5))
    a = with_gold(_result(langs), worse, qrels, opts)
    b = with_gold(_result(langs), better, qrels, opts)
    kw = {"tests": TESTS, "permutations": 2000, "seed": 1, "level": 0.05}
    comp = compare_measures(a, b, name_a="xDR", name_b="+xQG", **kw)
    assert comp is not None and list(comp.tests) == ["MRR@10", "Recall@1", "Recall@5"]
    assert comp.tests["MRR@10"]["macro"]["ttest"].diff == pytest.approx(75.0)  # 1 - 1/4, in points
    assert comp.markers("Recall@1", "ja") == "†‡" and comp.markers("Recall@5", "macro") == ""
    assert compare_measures(b, a, **kw).markers("MRR@10", "macro") == "↓†‡"
    same = compare_measures(a, a, **kw)
    assert same.tests["MRR@10"]["ar"]["randomization"].p_value == 1.0
    assert compare_measures(_result(langs), b, **kw) is None  # nothing to compare


def test_read_qrels(tmp_path: Path) -> None:
    f = tmp_path / "qrels.txt"
    f.write_text("q1 0 d1 1\nq1 0 d2 2\n\nq2 0 d3 0\n")
    assert read_qrels(f) == {"q1": {"d1": 1, "d2": 2}}  # relevance 0 is not gold
    g = tmp_path / "more.txt"
    g.write_text("q2 0 d4 1\n")
    assert read_qrels([f, g]) == {"q1": {"d1": 1, "d2": 2}, "q2": {"d4": 1}}
    g.write_text("q1 0 d1\n")
    with pytest.raises(XqgInputError, match="4 columns") as e:
        read_qrels(g)
    assert e.value.line == 1
    g.write_text("q1 0 d1 1\nq1 0 d1 high\n")
    with pytest.raises(XqgInputError, match="relevance must be an integer") as e:
        read_qrels(g)
    assert e.value.line == 2
