"""The alignment metrics (xqg.evaluation.alignment) against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from xqg.evaluation import alignment as al


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_identical_embeddings_give_cosine_one_and_perfect_translation_and_cka() -> None:
    x = _rng().normal(size=(50, 8))
    assert np.allclose(al.paired_cosine(x, 3.0 * x), 1.0)
    assert al.translation_hits(x, x).mean() == 1.0
    assert al.linear_cka(x, x) == pytest.approx(1.0)
    rot, _ = np.linalg.qr(_rng(1).normal(size=(8, 8)))
    assert al.linear_cka(x, 2.0 * x @ rot) == pytest.approx(1.0)  # invariant to rotation and scale


def test_questions_equal_to_their_orthonormal_paragraphs_have_margin_one() -> None:
    passages = np.eye(4)
    gold = np.array([0, 1, 2, 3, 0])
    q = passages[gold]
    mean_margin, hard_margin = al.gold_margin(q, passages, gold)
    assert np.allclose(mean_margin, 1.0) and np.allclose(hard_margin, 1.0)  # hinge loss max(0, 1 - m) = 0
    # a hand case: q = (1, 1)/sqrt2 against gold e1 and other e2: cos 0.7071 both, margin 0
    m, h = al.gold_margin(np.array([[1.0, 1.0]]), np.eye(2), np.array([0]))
    assert m[0] == pytest.approx(0.0) and h[0] == pytest.approx(0.0)


def test_a_known_permutation_breaks_translation_retrieval() -> None:
    x = _rng(2).normal(size=(40, 16))
    perm = np.roll(np.arange(40), 1)  # every question paired with another's translation
    assert al.translation_hits(x, x[perm]).sum() == 0.0
    assert al.translation_hits(x, x + 0.01 * _rng(3).normal(size=x.shape)).mean() == 1.0


def test_infonce_is_capped_at_log_n_and_near_zero_for_independent_embeddings() -> None:
    passages = _rng(4).normal(size=(20, 32))
    gold = np.arange(400) % 20
    aligned = al.infonce(passages[gold], passages, gold, folds=2, seed=0)
    assert aligned.log_n == pytest.approx(np.log(20))
    assert 0.9 * np.log(20) < aligned.estimate <= np.log(20) + 1e-12
    independent = al.infonce(_rng(5).normal(size=(400, 32)), passages, gold, folds=2, seed=0)
    assert abs(independent.estimate) < 0.05
    # the scale 0 critic gives exactly 0: the fitted bound is never below it on the fitting questions
    assert np.allclose(al.infonce_terms(np.zeros((3, 5)), np.zeros(3, dtype=int), 0.0), 0.0)


def test_cka_of_independent_embeddings_is_near_zero() -> None:
    a, b = _rng(6).normal(size=(2000, 8)), _rng(7).normal(size=(2000, 8))
    assert al.linear_cka(a, b) < 0.02


def test_bootstrap_intervals_are_seeded_and_cover_the_mean() -> None:
    v = _rng(8).normal(loc=1.0, size=300)
    lo, hi = al.bootstrap_mean_ci(v, resamples=500, seed=1)
    assert lo < v.mean() < hi and (lo, hi) == al.bootstrap_mean_ci(v, resamples=500, seed=1)
    x = _rng(9).normal(size=(100, 4))
    lo, hi = al.bootstrap_ci(lambda rows: al.linear_cka(x[rows], x[rows]), 100, resamples=20, seed=0)
    assert lo == pytest.approx(1.0) and hi == pytest.approx(1.0)


def test_vectorised_cka_bootstrap_equals_recomputing_on_the_drawn_rows() -> None:
    x, y = _rng(10).normal(size=(60, 5)), _rng(11).normal(size=(60, 3))
    x[:, 0] += y[:, 0]  # some shared structure
    expected = al.bootstrap_ci(lambda rows: al.linear_cka(x[rows], y[rows]), 60, resamples=30, seed=4)
    # the same draws (one ``integers(0, n, n)`` per resample), in blocks of any size
    assert al.bootstrap_cka(x, y, resamples=30, seed=4) == pytest.approx(expected)
    assert al.bootstrap_cka(x, y, resamples=30, seed=4, max_block=7) == pytest.approx(expected)
