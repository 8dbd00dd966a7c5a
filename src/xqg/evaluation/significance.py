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

Multiple tests: one comparison runs languages x metrics x tests (7 x 2 x 2 + macro), so at level 0.05 some marker
is likely by chance alone. ``correction="holm"`` adjusts the p-values of the whole family of one comparison (every
language and the macro, every metric, every test) with Holm's step-down procedure (Holm 1979), which controls the
family-wise error rate at ``level`` and is uniformly more powerful than Bonferroni; the markers then use the adjusted
p-values. ``none`` (the default) keeps the per-test p-values, as the paper reports them.
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
CORRECTIONS = ("none", "holm")  # for the multiple tests of one comparison


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
    correction: str = "none"  # one of CORRECTIONS, set by :func:`correct`
    family: int = 0  # tests in the corrected family (0: no correction)
    adjusted: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)  # as ``tests``: adjusted p

    def p_value(self, metric: str, lang: str, test: str) -> float:
        """The test's own (unadjusted) p-value."""
        return self.tests[metric][lang][test].p_value

    def marker_p(self, metric: str, lang: str, test: str) -> float:
        """The p-value the markers use: Holm-adjusted after :func:`correct`, else the test's own."""
        adj = self.adjusted.get(metric, {}).get(lang, {})
        return adj[test] if test in adj else self.tests[metric][lang][test].p_value

    def markers(self, metric: str, lang: str, symbols: Mapping[str, str] | None = None) -> str:
        """``†`` when the t-test, ``‡`` when the randomisation test is significant at ``level``; preceded by
        ``↓`` (:data:`LOSS`) when b is significantly *worse* than a, so a loss never reads as a plain win. With a
        correction, significance is judged on the adjusted p-values (:meth:`marker_p`)."""
        symbols = symbols or MARKERS
        res = self.tests.get(metric, {}).get(lang, {})
        sig = [t for t in TESTS if t in res and self.marker_p(metric, lang, t) < self.level]
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
            "correction": self.correction,
            **({"family": self.family, "adjusted": self.adjusted} if self.correction != "none" else {}),
        }


MARKERS = {"ttest": "†", "randomization": "‡"}
LOSS = "↓"  # before the markers of a significant loss (b worse than a)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the order given: with p sorted ascending, the i-th (from 0) of m
    becomes max over j <= i of min(1, (m - j) * p_(j)). Rejecting where the adjusted p < level controls the
    family-wise error rate at level (any dependence between the tests)."""
    m = len(p_values)
    out = [1.0] * m
    running = 0.0
    for rank, i in enumerate(sorted(range(m), key=lambda i: p_values[i])):
        running = max(running, min(1.0, (m - rank) * float(p_values[i])))
        out[i] = running
    return out


def check_correction(method: str, field_name: str = "correction") -> str:
    """``method`` when it is one of :data:`CORRECTIONS`; else one :class:`XqgInputError` naming ``field_name``."""
    if method not in CORRECTIONS:
        raise XqgInputError(
            f"unknown correction {method!r}; choose from {list(CORRECTIONS)}", field=field_name
        )
    return method


def correct(comparisons: Comparison | Sequence[Comparison], method: str = "holm") -> None:
    """Adjust, in place, the p-values of the tests of ``comparisons`` taken as one family (e.g. R@kt and the
    qrels measures of one system against the baseline): every metric, language and macro, and test. ``none``
    drops any earlier adjustment."""
    check_correction(method)
    comps = [comparisons] if isinstance(comparisons, Comparison) else list(comparisons)
    cells = [
        (c, metric, lang, test)
        for c in comps
        for metric, per in c.tests.items()
        for lang, per_t in per.items()
        for test in per_t
    ]
    raw = [c.tests[metric][lang][test].p_value for c, metric, lang, test in cells]
    adjusted = holm(raw) if method == "holm" else raw
    for c in comps:
        c.correction = method
        c.family = len(cells) if method != "none" else 0
        c.adjusted = {}
    if method == "none":
        return
    for (c, metric, lang, test), p in zip(cells, adjusted, strict=True):
        c.adjusted.setdefault(metric, {}).setdefault(lang, {})[test] = p


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
    correction: str = "none",
) -> Comparison:
    """Paired tests of ``b`` against ``a`` per metric, per language and macro, over the questions both counted;
    ``correction`` (:data:`CORRECTIONS`) adjusts the p-values of that family for multiple tests."""
    check_correction(correction)
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
    correct(comp, correction)
    return comp
