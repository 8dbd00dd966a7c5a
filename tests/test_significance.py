"""Paired significance tests against values computed by hand (formulas and exact enumerations)."""

from __future__ import annotations

import math
from math import comb

import numpy as np
import pytest
from scipy.stats import t as t_dist

from xqg.core.errors import XqgInputError
from xqg.evaluation.result import EvalResult
from xqg.evaluation.significance import compare, correct, holm, paired_randomization, paired_ttest
from xqg.evaluation.tables import metrics_of_results, paper_table, significance_footnotes


def test_paired_ttest_matches_the_textbook_formula():
    a = [1, 0, 0, 1, 0, 1, 0, 0]
    b = [1, 1, 1, 1, 0, 1, 1, 0]
    # differences: three 1s, five 0s; mean 3/8, sample variance (3 * 0.625^2 + 5 * 0.375^2) / 7 = 1.875 / 7
    t_hand = (3 / 8) / math.sqrt(1.875 / 7 / 8)
    p_hand = 2 * t_dist.sf(t_hand, df=7)
    res = paired_ttest(a, b)
    assert res.statistic == pytest.approx(t_hand, rel=1e-12)
    assert res.statistic == pytest.approx(2.0493901531919194, rel=1e-12)
    assert res.p_value == pytest.approx(p_hand, rel=1e-9)
    assert res.diff == pytest.approx(37.5)
    assert res.n == 8


def test_paired_ttest_degenerate_cases():
    same = paired_ttest([1, 0, 1], [1, 0, 1])
    assert (same.statistic, same.p_value) == (0.0, 1.0)
    always = paired_ttest([0, 0, 0], [1, 1, 1])
    assert always.p_value == 0.0 and always.statistic == math.inf


def test_randomization_is_exact_for_few_discordant_questions():
    # nonzero differences [1, 1, 1, 1, -1]: |sum| >= 3 for sums +-5 (1 each) and +-3 (5 each): 12 of 32
    res = paired_randomization([1, 1, 0, 1, 1, 0, -1, 0], permutations=10_000)
    assert res.p_value == pytest.approx(12 / 32, abs=1e-15)
    assert res.method == "randomization (exact)"
    assert paired_randomization([1] * 6).p_value == pytest.approx(2 / 64)
    assert paired_randomization([0, 0, 0]).p_value == 1.0


def test_randomization_monte_carlo_is_seeded_and_close_to_the_binomial_value():
    d = [1] * 30 + [-1] * 10 + [0] * 15
    # |S| >= 20 for S = 2B - 40, B ~ Bin(40, 1/2): B >= 30 or B <= 10
    exact = 2 * sum(comb(40, b) for b in range(30, 41)) / 2**40
    r1 = paired_randomization(d, permutations=20_000, seed=5)
    r2 = paired_randomization(d, permutations=20_000, seed=5)
    assert r1.p_value == r2.p_value
    assert abs(r1.p_value - exact) < 0.0015
    assert r1.p_value >= 1 / 20_001


def result(hits: dict[str, bool], langs: dict[str, str], k: int = 2) -> EvalResult:
    counts: dict[str, int] = {}
    for qid in hits:
        counts[langs[qid]] = counts.get(langs[qid], 0) + 1
    return EvalResult(ks=(k,), counts=counts, hits={k: dict(hits)}, question_lang=dict(langs))


def test_macro_test_weights_languages_so_the_mean_is_the_macro_difference():
    langs = {"x1": "ar", "y1": "bn", "y2": "bn", "y3": "bn"}
    a = result({"x1": False, "y1": False, "y2": True, "y3": False}, langs)
    b = result({"x1": True, "y1": True, "y2": True, "y3": False}, langs)
    comp = compare(a, b, permutations=1000, name_a="base", name_b="new")
    macro = comp.tests["R@2kt"]["macro"]
    assert macro["ttest"].diff == pytest.approx(b.macro[2] - a.macro[2])  # (100 + 33.3) / 2 points
    assert macro["ttest"].diff == pytest.approx(200 / 3)
    # weighted differences: ar question weight 4 / (2 * 1) = 2, bn 4 / (2 * 3) = 2/3 -> [2, 2/3, 0, 0]
    d = np.array([2, 2 / 3, 0, 0])
    t_hand = d.mean() / (d.std(ddof=1) / 2)
    assert macro["ttest"].statistic == pytest.approx(t_hand)
    # exact sign flips of [2, 2/3]: |sum| in {8/3, 4/3}, observed 8/3 -> 2 of 4
    assert macro["randomization"].p_value == pytest.approx(0.5)
    bn = comp.tests["R@2kt"]["bn"]["randomization"]
    assert bn.p_value == 1.0 and bn.n == 3  # one discordant question: both signs reach |1|
    assert comp.markers("R@2kt", "macro") == ""
    assert comp.to_json()["tests"]["R@2kt"]["ar"]["ttest"]["n"] == 1


def test_markers_and_errors():
    langs = {f"q{i}": "fi" for i in range(40)}
    a = result({q: i < 5 for i, q in enumerate(langs)}, langs)
    b = result({q: i < 30 for i, q in enumerate(langs)}, langs)
    comp = compare(a, b, permutations=2000, seed=1)
    assert comp.markers("R@2kt", "fi") == "†‡"
    assert comp.marker_map()[("R@2kt", "macro")] == "†‡"
    only_t = compare(a, b, tests=["ttest"])
    assert only_t.markers("R@2kt", "fi") == "†"
    # a significant loss carries the loss sign: a worse system never gets a plain marker
    worse = compare(b, a, permutations=2000, seed=1)
    assert worse.markers("R@2kt", "fi") == "↓†‡" and worse.marker_map()[("R@2kt", "macro")] == "↓†‡"
    with pytest.raises(XqgInputError, match="unknown significance test"):
        compare(a, b, tests=["wilcoxon"])
    other = result({q: True for q in langs}, {q: "ja" for q in langs})
    with pytest.raises(XqgInputError, match="different languages"):
        compare(a, other)


def test_the_significance_level_sets_the_markers_and_is_saved():
    langs = {f"q{i}": "fi" for i in range(40)}
    a = result({q: i < 5 for i, q in enumerate(langs)}, langs)
    b = result({q: i < 30 for i, q in enumerate(langs)}, langs)
    strict = compare(a, b, permutations=2000, seed=1, level=1e-12)
    assert strict.level == 1e-12 and strict.markers("R@2kt", "fi") == ""
    saved = strict.to_json()
    assert saved["level"] == 1e-12 and "alpha" not in saved
    notes = significance_footnotes(0.01, "base", ["ttest"])
    assert notes[0] == "† p < 0.01 vs base, paired t-test" and notes[1].startswith("↓ before a marker")


def test_report_tables_from_saved_results():
    a = {"R@2kt": {"ar": 40.0, "te": 50.0, "macro": 45.0, "count": {"ar": 3, "te": 2}}, "compare": {}}
    b = {
        "metrics": {"R@2kt": {"ar": 42.5, "te": 55.0, "macro": 48.75, "count": {"ar": 3, "te": 2}}},
        "depth": 100,
    }
    systems = {"mBERT": metrics_of_results(a), "mBERT + xQG": metrics_of_results(b)}
    md = paper_table(systems, fmt="markdown", markers={"mBERT + xQG": {("R@2kt", "macro"): "†"}}, decimals=1)
    assert md.splitlines() == [
        "| System | Metric | ar | te | Avg |",
        "|---|---|---:|---:|---:|",
        "| mBERT | R@2kt | 40.0 | 50.0 | 45.0 |",
        "| mBERT + xQG | R@2kt | 42.5 | 55.0 | 48.8† |",
        "|  | questions | 3 | 2 | 5 |",
    ]
    tex = paper_table(systems, fmt="latex", markers={"mBERT + xQG": {("R@2kt", "ar"): "↓†"}}, decimals=1)
    assert tex.splitlines() == [
        r"\begin{tabular}{llrrr}",
        r"\toprule",
        r"System & Metric & ar & te & Avg \\",
        r"\midrule",
        r"mBERT & R@2kt & 40.0 & 50.0 & 45.0 \\",
        r"mBERT + xQG & R@2kt & 42.5\textsuperscript{$\downarrow$}\textsuperscript{\dag} & 55.0 & 48.8 \\",
        r"\midrule",
        r" & questions & 3 & 2 & 5 \\",
        r"\bottomrule",
        r"\end{tabular}",
    ]
    text = paper_table(systems, counts=False).splitlines()
    assert text[0].split() == ["System", "Metric", "ar", "te", "Avg"] and len(text) == 4


def test_holm_adjusts_step_down_and_caps_at_one():
    # sorted 0.005 (x4), 0.01 (x3), 0.03 (x2), 0.04 (x1 -> kept monotone at 0.06)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == [1.0, 1.0] and holm([]) == [] and holm([0.2]) == [0.2]


def test_holm_over_one_comparison_drops_markers_the_family_does_not_support():
    langs = {**{f"f{i}": "fi" for i in range(40)}, **{f"j{i}": "ja" for i in range(40)}}
    a = result({q: int(q[1:]) < 10 for q in langs}, langs)
    b = result({q: int(q[1:]) < (17 if q[0] == "f" else 10) for q in langs}, langs)
    plain = compare(a, b, permutations=2000, seed=1)
    assert plain.markers("R@2kt", "fi") == "†‡" and plain.to_json()["correction"] == "none"
    # fi: 7 discordant questions, all for b -> exact randomisation p = 2 / 2^7; family: (fi, ja, macro) x 2 tests
    assert plain.p_value("R@2kt", "fi", "randomization") == pytest.approx(1 / 64)
    holm_comp = compare(a, b, permutations=2000, seed=1, correction="holm")
    p_t = plain.p_value("R@2kt", "fi", "ttest")
    assert holm_comp.family == 6
    assert holm_comp.marker_p("R@2kt", "fi", "ttest") == pytest.approx(6 * p_t)
    assert holm_comp.marker_p("R@2kt", "fi", "randomization") == pytest.approx(4 / 64)
    assert holm_comp.p_value("R@2kt", "fi", "randomization") == pytest.approx(1 / 64)  # raw p kept
    assert holm_comp.markers("R@2kt", "fi") == "†" and holm_comp.markers("R@2kt", "macro") == "†"
    saved = holm_comp.to_json()
    assert saved["correction"] == "holm" and saved["family"] == 6
    assert saved["adjusted"]["R@2kt"]["fi"]["randomization"] == pytest.approx(1 / 16)
    # a loss stays a loss after the correction; "none" drops an earlier adjustment
    assert compare(b, a, permutations=2000, seed=1, correction="holm").markers("R@2kt", "fi") == "↓†"
    correct(holm_comp, "none")
    assert holm_comp.markers("R@2kt", "fi") == "†‡" and "adjusted" not in holm_comp.to_json()
    with pytest.raises(XqgInputError, match="unknown correction 'bonferroni'"):
        compare(a, b, correction="bonferroni")
    notes = significance_footnotes(0.05, "base", ["ttest"], "holm", 6)
    assert notes[0] == "† p < 0.05 vs base, paired t-test (Holm-adjusted over the 6 tests of each comparison)"
