"""Paper-style curves and the baseline-vs-+xQG table from trial records."""

from __future__ import annotations

from pathlib import Path

import pytest

from xqg.evaluation.plots import (
    best_alpha_labels,
    best_vs_baseline_heading,
    best_vs_baseline_table,
    curve,
    heatmap_grid,
    no_gain_sentence,
    paper_plots,
    xqg_table,
)


def _rec(alpha: float, n: int, ar: float, ja: float, **extra: object) -> dict:
    m = {"ar": ar, "ja": ja, "macro": (ar + ja) / 2, "count": {"ar": 3, "ja": 4}}
    return {"params": {"enabled": True, "alpha": alpha, "n": n}, "metrics": {"R@2kt": m}, **extra}


GRID = [
    _rec(0.0, 1, 40.0, 30.0),
    _rec(0.0, 2, 40.0, 30.0),
    _rec(0.01, 1, 42.0, 31.0),
    _rec(0.01, 2, 44.0, 29.0, markers={"R@2kt": {"ar": "†", "macro": "‡"}}),
    _rec(0.05, 1, 41.0, 28.0),
    _rec(0.05, 2, 43.0, 27.0),
]


def test_curves_follow_the_records() -> None:
    lines = curve(GRID, "alpha", "R@2kt", {"n": 2})
    assert lines["ar"] == [(0.0, 40.0), (0.01, 44.0), (0.05, 43.0)]
    assert lines["macro"] == [(0.0, 35.0), (0.01, 36.5), (0.05, 35.0)]
    # alpha = 0 is the baseline of every n
    assert curve(GRID, "alpha", "R@2kt", {"n": 1})["ja"][0] == (0.0, 30.0)
    by_n = curve(GRID, "n", "R@2kt", {"alpha": 0.01})
    assert by_n["ja"] == [(1.0, 31.0), (2.0, 29.0)]
    # no fixed alpha: best-macro record for each n
    assert curve(GRID, "n", "R@2kt", None)["macro"] == [(1.0, 36.5), (2.0, 36.5)]


def test_paper_plots_and_table(tmp_path: Path) -> None:
    files = paper_plots(
        GRID, tmp_path, metrics=("R@2kt", "R@5kt"), best={"augmentation.alpha": 0.01, "augmentation.n": 2}
    )
    assert set(files) == {"r2kt_vs_alpha", "r2kt_vs_n", "r2kt_alpha_n"}
    for f in files.values():
        assert Path(f).read_bytes()[:4] == b"\x89PNG"
        assert Path(f).with_suffix(".pdf").read_bytes()[:5] == b"%PDF-"
    table = best_vs_baseline_table(GRID, {"augmentation.alpha": 0.01, "augmentation.n": 2}, fmt="markdown")
    assert table is not None
    lines = table.splitlines()
    assert "| xDR | R@2kt | 40.00 | 30.00 | 35.00 |" in lines
    assert "| +xQG (alpha=0.01, n=2) | R@2kt | 44.00† | 29.00 | 36.50‡ |" in lines
    assert (
        best_vs_baseline_table(GRID[2:], {"augmentation.alpha": 0.01, "augmentation.n": 2}) is None
    )  # no baseline
    # when alpha = 0 wins the study, the best xQG trial by objective is still shown against it
    scored = [dict(r, objective=r["metrics"]["R@2kt"]["macro"]) for r in GRID]
    lost = best_vs_baseline_table(scored, {"augmentation.alpha": 0.0, "augmentation.n": 1}, fmt="markdown")
    assert (
        lost is not None and "| +xQG (alpha=0.01, n=1) | R@2kt | 42.00 | 31.00 | 36.50 |" in lost.splitlines()
    )
    assert (
        best_vs_baseline_table(GRID, {"augmentation.alpha": 0.0, "augmentation.n": 1}) is None
    )  # no objective
    # markers in Comparison.marker_map form are accepted too
    t2 = xqg_table(GRID[0]["metrics"], GRID[3]["metrics"], markers={("R@2kt", "ja"): "†"})
    assert "29.00†" in t2 and "44.00†" not in t2
    with pytest.raises(ValueError):
        xqg_table(GRID[0]["metrics"], GRID[3]["metrics"], fmt="html")


def test_plots_keep_their_own_style_and_label_best_alphas(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    before = dict(plt.rcParams)
    with plt.style.context("ggplot"):  # a global style another library left behind (Optuna does this)
        leaked = plt.rcParams["axes.facecolor"]
        paper_plots(GRID, tmp_path, best={"augmentation.alpha": 0.01, "augmentation.n": 2})
        assert plt.rcParams["axes.facecolor"] == leaked  # nor do the paper plots change the caller's style
    assert dict(plt.rcParams) == before
    # one point per n from different alphas: each point says which alpha it is
    tpe = [GRID[0], GRID[2], _rec(0.05, 2, 45.0, 30.0), _rec(0.02, 3, 41.0, 30.0)]
    assert best_alpha_labels(tpe, "R@2kt") == {1.0: "alpha=0.01", 2.0: "alpha=0.05", 3.0: "alpha=0.02"}
    files = paper_plots(tpe, tmp_path / "tpe", best={"augmentation.alpha": 0.05, "augmentation.n": 2})
    assert Path(files["r2kt_vs_n"]).with_suffix(".pdf").exists()


def test_heading_says_worse_when_the_best_setting_loses() -> None:
    best = {"augmentation.alpha": 0.01, "augmentation.n": 2}
    assert "significantly better" in best_vs_baseline_heading(GRID, best)
    lost = [*GRID[:3], _rec(0.01, 2, 30.0, 20.0, markers={"R@2kt": {"macro": "↓†"}})]
    assert "significantly worse than the baseline" in best_vs_baseline_heading(lost, best)
    assert "no significant difference" in best_vs_baseline_heading(GRID[:3], {"augmentation.alpha": 0.01})
    table = best_vs_baseline_table(lost, best, fmt="latex")
    assert table is not None and r"\toprule" in table and "↓" not in table


def test_alpha_curve_takes_the_baseline_point_from_the_trials() -> None:
    base = GRID[0]["metrics"]
    no_zero = [dict(r, baseline=base) for r in GRID if r["params"]["alpha"] > 0]
    lines = curve(no_zero, "alpha", "R@2kt", {"n": 2})
    assert lines["macro"] == [(0.0, 35.0), (0.01, 36.5), (0.05, 35.0)]
    assert curve(GRID[2:], "alpha", "R@2kt", {"n": 2})["macro"][0] == (0.01, 36.5)  # no baseline anywhere


def test_alpha_n_heatmap_cells_and_binning(tmp_path: Path) -> None:
    labels, ns, cells = heatmap_grid(GRID, "R@2kt")
    # alpha = 0 is the baseline (in the title), not a column; each cell is the macro value of its setting
    assert labels == ["0.01", "0.05"] and ns == [1, 2]
    assert cells == [[36.5, 34.5], [36.5, 35.0]]
    # a TPE study's many distinct alphas fall into equal-width columns; each cell keeps its best value
    tpe = [_rec(0.001 * i, 1 + i % 2, 40.0 + i, 30.0) for i in range(1, 31)]
    labels, ns, cells = heatmap_grid(tpe, "R@2kt")
    assert len(labels) == 10 and labels[0].startswith("0.001-") and ns == [1, 2]
    assert cells[0][-1] == (70.0 + 30.0) / 2 and cells[1][-1] == (69.0 + 30.0) / 2  # alpha 0.030 / 0.029
    assert cells[0][0] == (42.0 + 30.0) / 2 and cells[1][0] == (43.0 + 30.0) / 2  # best of 0.001-0.003
    assert heatmap_grid(GRID[:2], "R@2kt") == ([], [], [])  # baseline only: nothing to map
    files = paper_plots(tpe, tmp_path, best={"augmentation.alpha": 0.03, "augmentation.n": 2})
    assert Path(files["r2kt_alpha_n"]).with_suffix(".pdf").read_bytes()[:5] == b"%PDF-"


def test_plain_sentence_when_no_setting_beats_the_baseline() -> None:
    assert no_gain_sentence(GRID) is None  # alpha=0.01, n=1 and n=2 beat 35.0
    lost = [GRID[0], _rec(0.01, 2, 38.0, 30.0), _rec(0.05, 1, 40.0, 29.0)]
    sentence = no_gain_sentence(lost)
    assert sentence == (
        "No xQG setting beat the baseline on macro R@2kt: the best of 2 (alpha=0.05, n=1) reached 34.50 "
        "against the baseline's 35.00."
    )
    assert no_gain_sentence(GRID[2:]) is None  # no baseline to compare with
