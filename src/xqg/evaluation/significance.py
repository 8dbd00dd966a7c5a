"""Paired significance tests between two systems scored on the same questions: per language and macro.

The unit is a question; its outcome a 0/1 hit (R@kt). Two tests:
- the paired t-test over per-question hits (``scipy.stats.ttest_rel``), the kind of test the paper reports;
- a paired randomisation test (sign-flip permutation): under the null hypothesis the two systems' outcomes are
  exchangeable per question, so each per-question difference keeps or flips its sign with probability 1/2; the
  p-value is the share of sign assignments whose |mean difference| reaches the observed one (two-sided). It is
  exact (all 2^m assignments of the m questions where the systems differ) when 2^m <= ``permutations``,
  otherwise Monte Carlo with ``permutations`` seeded draws and the (1 + count) / (1 + draws) estimate.

Macro: the macro average weights every language equally, so a question of language l weighs
``N / (L * n_l)`` (N questions, L languages, n_l questions of l). Both tests run on the per-question
differences multiplied by that weight: their mean is then exactly the macro difference, the randomisation test
flips whole questions (the right null for the macro statistic), and the t-test is the paired t-test of the
weighted outcomes. Pooling raw differences instead would test the micro average, which the paper does not report.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy.stats import ttest_rel

from xqg.core.errors import XqgInputError
from xqg.evaluation.result import EvalResult, lang_order, metric_name

TESTS = ("ttest", "randomization")
MACRO = "macro"


@dataclass(frozen=True)
class TestResult:
    """One test: mean difference (b - a, in percentage points), statistic, p-value, questions, method."""

    diff: float
    statistic: float
    p_value: float
    n: int
    method: str


def paired_ttest(a: Sequence[float], b: Sequence[float]) -> TestResult:
    """Paired t-test of b against a; identical outcomes give t = 0, p = 1 (scipy would give NaN)."""
    xa = np.asarray(a, dtype=np.float64)
    xb = np.asarray(b, dtype=np.float64)
    if xa.shape != xb.shape:
        raise ValueError("paired samples must have the same length")
    n = int(xa.size)
    d = xb - xa
    diff = float(d.mean()) * 100 if n else 0.0
    if n < 2 or not np.any(d != d[0]):
        # no variance in the differences: either all equal to 0 (no evidence) or all equal and nonzero
        if n >= 2 and d[0] != 0:
            return TestResult(diff, math.copysign(math.inf, d[0]), 0.0, n, "paired t-test")
        return TestResult(diff, 0.0, 1.0, n, "paired t-test")
    res = ttest_rel(xb, xa)
    return TestResult(diff, float(res.statistic), float(res.pvalue), n, "paired t-test")


def paired_randomization(
    d: Sequence[float], permutations: int = 10_000, seed: int = 0, chunk: int = 2_000
) -> TestResult:
    """Two-sided sign-flip randomisation test of mean(d) = 0 (exact when it is cheap, else seeded Monte Carlo)."""
    if permutations < 1:
        raise ValueError(f"permutations must be >= 1, got {permutations}")
    x = np.asarray(d, dtype=np.float64)
    n = int(x.size)
    obs = float(x.mean()) if n else 0.0
    nz = x[x != 0]
    m = int(nz.size)
    if m == 0:
        return TestResult(obs * 100, obs, 1.0, n, "randomization (exact)")
    thr = abs(nz.sum()) - 1e-9 * max(1.0, float(np.abs(nz).sum()))
    if m <= 20 and 2**m <= max(permutations, 1):
        # every sign assignment: bits of 0..2^m-1
        codes = np.arange(2**m, dtype=np.int64)[:, None]
        signs = 1 - 2 * ((codes >> np.arange(m, dtype=np.int64)) & 1)
        sums = np.abs(signs @ nz)
        p = float(np.count_nonzero(sums >= thr)) / 2**m
        return TestResult(obs * 100, obs, p, n, "randomization (exact)")
    rng = np.random.default_rng(seed)
    count = 0
    done = 0
    while done < permutations:
        b = min(chunk, permutations - done)
        signs = rng.integers(0, 2, size=(b, m), dtype=np.int8) * 2 - 1
        sums = np.abs(signs.astype(np.float64) @ nz)
        count += int(np.count_nonzero(sums >= thr))
        done += b
    p = (1 + count) / (1 + permutations)
    return TestResult(obs * 100, obs, p, n, f"randomization ({permutations} draws, seed {seed})")


@dataclass
class Comparison:
    """Tests of system b against system a: ``tests[metric][lang or 'macro'][test] -> TestResult``."""

    name_a: str
    name_b: str
    tests: dict[str, dict[str, dict[str, TestResult]]] = field(default_factory=dict)
    level: float = 0.05  # significance level of the markers
    notes: list[str] = field(default_factory=list)

    def p_value(self, metric: str, lang: str, test: str) -> float:
        return self.tests[metric][lang][test].p_value

    def markers(self, metric: str, lang: str, symbols: Mapping[str, str] | None = None) -> str:
        """``†`` when the t-test, ``‡`` when the randomisation test is significant at ``level``; preceded by
        ``↓`` (:data:`LOSS`) when b is significantly *worse* than a, so a loss never reads as a plain win."""
        symbols = symbols or MARKERS
        res = self.tests.get(metric, {}).get(lang, {})
        sig = [t for t in TESTS if t in res and res[t].p_value < self.level]
        if not sig:
            return ""
        loss = LOSS if res[sig[0]].diff < 0 else ""  # both tests test the same mean difference
        return loss + "".join(symbols[t] for t in sig)

    def marker_map(self) -> dict[tuple[str, str], str]:
        """(metric, lang or 'macro') -> markers, for :func:`xqg.evaluation.tables.paper_table`."""
        return {(m, lang): self.markers(m, lang) for m, per in self.tests.items() for lang in per}

    def to_json(self) -> dict[str, Any]:
        return {
            "a": self.name_a,
            "b": self.name_b,
            "level": self.level,
            "tests": {
                m: {lang: {t: asdict(r) for t, r in per_t.items()} for lang, per_t in per.items()}
                for m, per in self.tests.items()
            },
            "notes": list(self.notes),
        }


MARKERS = {"ttest": "†", "randomization": "‡"}
LOSS = "↓"  # before the markers of a significant loss (b worse than a)


def compare(
    a: EvalResult,
    b: EvalResult,
    *,
    tests: Sequence[str] = TESTS,
    permutations: int = 10_000,
    seed: int = 0,
    level: float = 0.05,
    name_a: str = "A",
    name_b: str = "B",
) -> Comparison:
    """Paired tests of ``b`` against ``a`` per metric, per language and macro, over the questions both counted."""
    bad = [t for t in tests if t not in TESTS]
    if bad:
        raise XqgInputError(f"unknown significance test(s) {bad}; choose from {list(TESTS)}", field="tests")
    if isinstance(permutations, bool) or not isinstance(permutations, int) or permutations < 1:
        raise XqgInputError(f"must be an integer >= 1, got {permutations!r}", field="permutations")
    if not 0 < level < 1:
        raise XqgInputError(f"must be a significance level in (0, 1), got {level!r}", field="level")
    ks = [k for k in a.ks if k in b.ks]
    if not ks:
        raise XqgInputError(f"the two results share no k (a: {a.ks}, b: {b.ks})", field="ks")
    comp = Comparison(name_a, name_b, level=level)
    common = [q for q in a.question_lang if q in b.question_lang]
    only = len(a.question_lang) + len(b.question_lang) - 2 * len(common)
    if only:
        comp.notes.append(
            f"{only} questions were counted by only one system; tested on the {len(common)} shared ones"
        )
    disagree = [q for q in common if a.question_lang[q] != b.question_lang[q]]
    if disagree:
        raise XqgInputError(
            f"{len(disagree)} questions are scored under different languages by the two systems "
            f"(first: {', '.join(disagree[:5])})"
        )
    if not common:
        raise XqgInputError("the two systems have no counted question in common")
    langs = lang_order(a.question_lang[q] for q in common)
    lang_of = np.array([langs.index(a.question_lang[q]) for q in common])
    n_l = np.bincount(lang_of, minlength=len(langs)).astype(np.float64)
    weight = len(common) / (len(langs) * n_l[lang_of])
    for ki, k in enumerate(ks):
        ha = np.array([a.hits[k][q] for q in common], dtype=np.float64)
        hb = np.array([b.hits[k][q] for q in common], dtype=np.float64)
        per: dict[str, dict[str, TestResult]] = {}
        groups = [(lang, lang_of == li) for li, lang in enumerate(langs)]
        for gi, (lang, mask) in enumerate([*groups, (MACRO, None)]):
            if mask is None:
                xa, xb = ha * weight, hb * weight
            else:
                xa, xb = ha[mask], hb[mask]
            res: dict[str, TestResult] = {}
            if "ttest" in tests:
                res["ttest"] = paired_ttest(xa, xb)
            if "randomization" in tests:
                # a distinct, reproducible stream per (k, language)
                sub_seed = int(np.random.SeedSequence([seed, ki, gi]).generate_state(1)[0])
                res["randomization"] = paired_randomization(xb - xa, permutations, sub_seed)
            per[lang] = res
        comp.tests[metric_name(k)] = per
    return comp
