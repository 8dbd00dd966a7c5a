"""Cross-lingual alignment of embeddings: pure functions of matrices, one row per question or passage.

Measured on parallel data (row ``i`` of the language-L questions and of the pivot questions is the same question;
``gold[i]`` is the row of its paragraph):

- :func:`paired_cosine`: cosine of a question in L and its pivot (English) version;
- :func:`gold_margin`: cosine with the gold paragraph minus the mean cosine with the other paragraphs (and minus
  the largest one: positive when the gold paragraph ranks first);
- :func:`translation_hits`: does a question in L find its own pivot version among all pivot questions (top 1)?
- :func:`infonce`: the InfoNCE lower bound on the mutual information between a question and its paragraph,
  ``I(Q; P) >= log N - L_NCE`` (van den Oord et al. 2018; Poole et al. 2019), with the critic
  ``f(q, p) = s * cos(q, p)``, N candidate paragraphs and the scale ``s >= 0`` fitted on other questions
  (cross-fitting). It never exceeds ``log N`` (nats): with a perfect critic the bound saturates there whatever the
  true MI, so compare states at the same N only. ``s = 0`` gives exactly 0, so a fitted scale can only find
  dependence, and cross-fitting keeps it from finding dependence that is not there (independent embeddings give
  ~0, slightly negative). It is a lower bound for the chosen critic family: a low value says this cosine critic
  finds little shared information, not that there is none;
- :func:`linear_cka`: linear centred kernel alignment (Kornblith et al. 2019) between two spaces over the same
  rows; 1 for spaces equal up to rotation and scale; for independent spaces it is positive by ~d/n (finite-sample
  bias), so compare against that floor;
- :func:`bootstrap_mean_ci`, :func:`bootstrap_cka`, :func:`bootstrap_ci`: percentile bootstrap over questions,
  seeded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp

#: critic scales tried when fitting the InfoNCE bound (0 included: the bound is then exactly 0)
SCALES = np.concatenate([[0.0], np.logspace(-1, 3, 49)])


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (float64; an all-zero row stays zero)."""
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def paired_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of row ``i`` of ``a`` with row ``i`` of ``b``, per row."""
    if a.shape != b.shape:
        raise ValueError(f"paired rows differ in shape: {a.shape} vs {b.shape}")
    return np.einsum("ij,ij->i", normalize_rows(a), normalize_rows(b))


def _check_gold(q: np.ndarray, passages: np.ndarray, gold: np.ndarray) -> np.ndarray:
    gold = np.asarray(gold, dtype=np.int64)
    if gold.shape != (q.shape[0],):
        raise ValueError(f"need one gold row per question: {gold.shape} for {q.shape[0]} questions")
    if passages.shape[0] < 2:
        raise ValueError("need at least two passages")
    if gold.size and (gold.min() < 0 or gold.max() >= passages.shape[0]):
        raise ValueError("gold rows out of range")
    return gold


def gold_margin(q: np.ndarray, passages: np.ndarray, gold: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per question: ``cos(q, gold) - mean cos(q, others)`` and ``cos(q, gold) - max cos(q, others)``."""
    gold = _check_gold(q, passages, gold)
    sims = normalize_rows(q) @ normalize_rows(passages).T
    rows = np.arange(q.shape[0])
    pos = sims[rows, gold]
    mean_other = (sims.sum(axis=1) - pos) / (passages.shape[0] - 1)
    others = sims.copy()
    others[rows, gold] = -np.inf
    return pos - mean_other, pos - others.max(axis=1)


def translation_hits(q: np.ndarray, pivot: np.ndarray) -> np.ndarray:
    """1.0 where question ``i`` in L is closest (cosine) to pivot question ``i`` among all pivot questions."""
    if q.shape != pivot.shape:
        raise ValueError(f"parallel rows differ in shape: {q.shape} vs {pivot.shape}")
    sims = normalize_rows(q) @ normalize_rows(pivot).T
    return (sims.argmax(axis=1) == np.arange(q.shape[0])).astype(np.float64)


def infonce_terms(sims: np.ndarray, gold: np.ndarray, scale: float) -> np.ndarray:
    """``log N + s * cos(q, gold) - logsumexp_p(s * cos(q, p))`` per question; their mean is ``log N - L_NCE``."""
    rows = np.arange(sims.shape[0])
    logits = scale * sims
    return np.log(sims.shape[1]) + logits[rows, gold] - logsumexp(logits, axis=1)


@dataclass(frozen=True)
class InfoNCE:
    """The cross-fitted InfoNCE bound: per-question terms (mean = the estimate), the fold scales, ``log N``."""

    terms: np.ndarray
    scales: tuple[float, ...]
    log_n: float

    @property
    def estimate(self) -> float:
        return float(self.terms.mean()) if self.terms.size else 0.0


def infonce(q: np.ndarray, passages: np.ndarray, gold: np.ndarray, folds: int = 2, seed: int = 0) -> InfoNCE:
    """The InfoNCE bound with the critic scale fitted on the other folds' questions (``folds=1``: fitted on all,
    which is optimistic by the one fitted parameter)."""
    gold = _check_gold(q, passages, gold)
    if folds < 1:
        raise ValueError("folds must be >= 1")
    sims = normalize_rows(q) @ normalize_rows(passages).T
    n = q.shape[0]
    fold_of = np.random.default_rng(seed).permutation(n) % folds
    terms = np.empty(n, dtype=np.float64)
    scales = []
    for f in range(folds):
        test = fold_of == f
        fit = ~test if folds > 1 else test
        best = max(SCALES, key=lambda s: float(infonce_terms(sims[fit], gold[fit], s).mean()))
        scales.append(float(best))
        terms[test] = infonce_terms(sims[test], gold[test], best)
    return InfoNCE(terms, tuple(scales), float(np.log(passages.shape[0])))


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA of two representations of the same rows: ``||Y'X||_F^2 / (||X'X||_F ||Y'Y||_F)`` on centred
    columns (feature-space form: O(n d^2))."""
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"CKA needs the same rows: {x.shape[0]} vs {y.shape[0]}")
    xc = np.asarray(x, dtype=np.float64) - np.mean(x, axis=0)
    yc = np.asarray(y, dtype=np.float64) - np.mean(y, axis=0)
    cross = np.linalg.norm(yc.T @ xc) ** 2
    denom = np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc)
    return float(cross / denom) if denom > 0 else 0.0


def _percentiles(stats: np.ndarray, confidence: float) -> tuple[float, float]:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    lo, hi = np.percentile(stats, [50 * (1 - confidence), 50 * (1 + confidence)])
    return float(lo), float(hi)


def bootstrap_mean_ci(
    values: np.ndarray, resamples: int = 1000, seed: int = 0, confidence: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of per-question ``values`` (questions resampled, seeded)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0 or resamples < 1:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for a in range(0, resamples, 256):  # bounded memory: 256 resamples x n at a time
        b = min(a + 256, resamples)
        means[a:b] = v[rng.integers(0, v.size, size=(b - a, v.size))].mean(axis=1)
    return _percentiles(means, confidence)


def bootstrap_cka(
    x: np.ndarray,
    y: np.ndarray,
    resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    max_block: int = 4_000_000,
) -> tuple[float, float]:
    """Percentile bootstrap interval of :func:`linear_cka` over resampled rows, all resamples at once: a resample
    is a row-count vector ``c``, and its centred cross-covariance is ``sum_n c_n x_n y_n' - n m_x m_y'``, so one
    ``(resamples x n) @ (n x d^2)`` product per block of features replaces thousands of small ones (the same
    values as recomputing on the drawn rows, with the draws of :func:`bootstrap_ci`)."""
    n = x.shape[0]
    if y.shape[0] != n:
        raise ValueError(f"CKA needs the same rows: {n} vs {y.shape[0]}")
    if n == 0 or resamples < 1:
        return float("nan"), float("nan")
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    rng = np.random.default_rng(seed)
    counts = np.stack([np.bincount(rng.integers(0, n, size=n), minlength=n) for _ in range(resamples)])
    counts = counts.astype(np.float64)

    def centred_norm2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Per resample: squared Frobenius norm of the centred weighted cross-covariance of ``a`` and ``b``."""
        ma, mb = counts @ a / n, counts @ b / n
        total = np.zeros(resamples)
        step = max(1, max_block // max(1, n * b.shape[1]))
        for i in range(0, a.shape[1], step):
            block = (a[:, i : i + step, None] * b[:, None, :]).reshape(n, -1)
            cov = (counts @ block).reshape(resamples, -1, b.shape[1])
            cov -= n * ma[:, i : i + step, None] * mb[:, None, :]
            total += (cov**2).sum(axis=(1, 2))
        return total

    denom = np.sqrt(centred_norm2(x, x) * centred_norm2(y, y))
    stats = np.where(denom > 0, centred_norm2(x, y) / np.where(denom > 0, denom, 1.0), 0.0)
    return _percentiles(stats, confidence)


def bootstrap_ci(
    stat: Callable[[np.ndarray], float],
    n: int,
    resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``stat(rows)`` for a statistic that is not a mean (e.g. CKA): ``stat`` is
    called with ``resamples`` seeded draws of ``n`` row indices with replacement."""
    if n == 0 or resamples < 1:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    stats = np.array([stat(rng.integers(0, n, size=n)) for _ in range(resamples)])
    return _percentiles(stats, confidence)
