"""Study 2, ``evaluate.py study=robustness``: how much do perturbed queries cost xDR, and does xQG make it more
robust?

The evaluation pipeline's inputs (retriever, corpus, passage embeddings; all cached) are built once; each
perturbation at each rate (:mod:`xqg.data.perturb`, seeded) rewrites the dev questions' texts (ids and languages
kept), their embeddings are cached under the new texts, and both systems search them: xDR and xDR with
xQG-fused passages (``augmentation.alpha`` / ``n``). Reported per language and macro: R@kt of both, each one's
drop from its clean score, the +xQG difference with its paired tests, and whether xQG's drop is smaller (a paired
randomisation test on the per-question difference of differences).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from xqg.core.errors import XqgInputError
from xqg.data.formats.xor import read_xor_questions
from xqg.data.perturb import PERTURBATIONS, english_versions, perturb_questions
from xqg.data.records import Question
from xqg.evaluation.result import EvalResult, lang_order, metric_name
from xqg.evaluation.score_files import compare_results, score_ranked
from xqg.evaluation.significance import MACRO, Comparison, paired_randomization
from xqg.evaluation.study_plots import grouped_bars
from xqg.retrieval.embeddings import encode_queries
from xqg.tasks import evaluate as pipeline
from xqg.tasks.schema import EvaluateSettings
from xqg.tasks.score import options_from_settings
from xqg.tasks.studies.common import Report, check_rate, open_report, query_source, study_fusion

log = logging.getLogger(__name__)
CLEAN = "clean"
XDR, XQG = "xDR", "+xQG"
CSV_COLUMNS = (
    *("perturbation", "rate", "lang", "metric", "xdr", "xqg", "xdr_drop", "xqg_drop", "xqg_minus_xdr"),
    *("p_ttest", "p_randomization", "changed_share"),
)


@dataclass
class Condition:
    """One perturbation at one rate (or the clean questions) scored for both systems."""

    name: str
    kind: str
    rate: float
    changed: float  # share of questions whose text changed
    base: EvalResult
    xqg: EvalResult
    comparison: Comparison


def _check(settings: EvaluateSettings) -> None:
    r = settings.study.robustness
    bad = [p for p in r.perturbations if p not in PERTURBATIONS]
    if bad or not r.perturbations:
        raise XqgInputError(
            f"unknown perturbation(s) {bad}; choose from {list(PERTURBATIONS)}",
            field="study.robustness.perturbations",
        )
    if not r.rates:
        raise XqgInputError("give at least one rate", field="study.robustness.rates")
    for rate in r.rates:
        check_rate(rate, "study.robustness.rates")


def english_of(settings: EvaluateSettings, questions: list[Question]) -> dict[str, str]:
    """The English version of each question (code-switching), from the question file itself and, for the
    synthetic world, from its English question file of the same split (``<world>/en_<split>.jsonl``)."""
    data = settings.data.bundle(settings.paths.cache_dir)
    split = settings.retrieval.split
    paths = [data.dev_questions_path if split == "dev" else data.test_questions_path]
    if settings.data.kind == "synthetic" and data.info.get("root"):
        paths.append(Path(data.info["root"]) / f"en_{split}.jsonl")
    pool = [q for p in paths if p is not None and Path(p).is_file() for q in read_xor_questions(p, None)]
    wanted = {q.qid for q in questions}
    return {k: v for k, v in english_versions(pool).items() if k in wanted}


def run(settings: EvaluateSettings) -> float | None:
    """Score every condition, write the report; returns None."""
    _check(settings)
    st = settings.study.robustness
    inputs = pipeline.prepare(settings)
    if inputs is None:
        raise XqgInputError("a study needs the whole corpus encoded; unset retrieval.shard_index")
    xqg = pipeline.xqg_search(settings, inputs, study_fusion(settings))
    scoring = options_from_settings(settings.metrics, settings.paths.cache_dir)
    english = english_of(settings, inputs.questions) if "code_switch" in st.perturbations else {}
    r = settings.retrieval
    conditions: list[Condition] = []
    skipped: list[str] = []
    plan = [(CLEAN, "", 0.0)] + [(f"{k}@{rate:g}", k, rate) for k in st.perturbations for rate in st.rates]
    for name, kind, rate in plan:
        qs = (
            inputs.questions
            if kind == ""
            else perturb_questions(inputs.questions, kind, rate, st.seed, english)
        )
        changed = float(np.mean([a.text != b.text for a, b in zip(inputs.questions, qs, strict=True)]))
        if kind and changed == 0.0:
            skipped.append(
                f"{name}: no question changed (code_switch needs English versions of the questions)"
            )
            continue
        log.info("robustness study: %s (%.0f%% of the questions changed)", name, 100 * changed)
        queries = encode_queries(
            inputs.retriever,
            [q.qid for q in qs],
            [q.text for q in qs],
            settings.paths.cache_dir,
            batch_size=r.query_batch_size,
            max_len=r.q_max_len,
        )
        cond_inputs = replace(inputs, questions=qs, queries=queries)
        base = score_ranked(qs, pipeline.search(settings, cond_inputs), inputs.corpus, scoring)
        fused = score_ranked(qs, pipeline.search(settings, cond_inputs, xqg), inputs.corpus, scoring)
        comp = compare_results(base, fused, scoring, XDR, XQG)
        conditions.append(Condition(name, kind, rate, changed, base, fused, comp))
    report = open_report(settings, "Robustness of xDR and +xQG to perturbed queries")
    try:
        write_report(report, settings, conditions, skipped, len(english), len(inputs.questions))
    finally:
        report.tracker.finish()
    print(f"robustness study report: {report.out_dir / 'report.md'}")
    return None


def _drop_test(
    clean: Condition, cond: Condition, k: int, seed: int, permutations: int
) -> tuple[float, float]:
    """Macro difference of the drops (xQG's minus xDR's, points; > 0: xQG loses less) and its two-sided
    randomisation p-value, flipping whole questions with the macro weights."""
    qids = [q for q in cond.base.hits[k] if q in clean.base.hits[k]]
    lang = cond.base.question_lang
    langs = lang_order(lang[q] for q in qids)
    n_l = {x: sum(1 for q in qids if lang[q] == x) for x in langs}
    w = np.array([len(qids) / (len(langs) * n_l[lang[q]]) for q in qids])

    def hits(res: EvalResult) -> np.ndarray:
        return np.array([float(res.hits[k][q]) for q in qids])

    d = ((hits(cond.xqg) - hits(clean.xqg)) - (hits(cond.base) - hits(clean.base))) * w
    res = paired_randomization(d, permutations, seed)
    return res.diff, res.p_value


def write_report(
    report: Report,
    settings: EvaluateSettings,
    conditions: list[Condition],
    skipped: list[str],
    with_english: int,
    n_questions: int,
) -> None:
    st, sig = settings.study.robustness, settings.metrics.significance
    clean = conditions[0]
    ks = list(clean.base.ks)
    langs = clean.base.languages
    fusion = study_fusion(settings).to_json()
    report.text(
        f"Data: {settings.data.name} {settings.retrieval.split} questions ({n_questions}; {with_english} with an "
        f"English version for code-switching), languages {', '.join(langs)}. Perturbation seed {st.seed}; rates "
        f"{', '.join(f'{x:g}' for x in st.rates)}. +xQG: alpha {fusion['alpha']}, n {fusion['n']}, mode "
        f"{fusion['mode']}, {query_source(settings)}. Significance of +xQG vs xDR on the same questions: "
        "† paired t-test, ‡ paired "
        f"randomisation test (level {sig.level}); ↓ marks a significant loss. 'robustness gain': xQG's drop minus "
        "xDR's drop from clean (macro, points; > 0 means xQG loses less), with its randomisation p-value.\n"
    )
    csv_rows = []
    for c in conditions:
        for k in ks:
            m = metric_name(k)
            pb, px = c.base.per_language[k], c.xqg.per_language[k]
            cb, cx = clean.base.per_language[k], clean.xqg.per_language[k]
            for lang in [*langs, MACRO]:
                vb = c.base.macro[k] if lang == MACRO else pb[lang]
                vx = c.xqg.macro[k] if lang == MACRO else px[lang]
                ref_b = clean.base.macro[k] if lang == MACRO else cb[lang]
                ref_x = clean.xqg.macro[k] if lang == MACRO else cx[lang]
                tests = c.comparison.tests[m][lang]
                csv_rows.append(
                    [c.kind or CLEAN, c.rate, lang, m, f"{vb:.2f}", f"{vx:.2f}", f"{vb - ref_b:.2f}"]
                    + [f"{vx - ref_x:.2f}", f"{vx - vb:.2f}"]
                    + [f"{tests[t].p_value:.4g}" if t in tests else "" for t in ("ttest", "randomization")]
                    + [f"{c.changed:.3f}"]
                )
    report.csv(
        "robustness.csv",
        CSV_COLUMNS,
        csv_rows,
    )
    for k in ks:
        m = metric_name(k)
        rows = []
        for c in conditions:
            gain, p = (
                _drop_test(clean, c, k, sig.seed, sig.permutations) if c is not clean else (float("nan"), 1.0)
            )
            rows.append(
                [
                    c.name,
                    f"{c.changed:.0%}",
                    f"{c.base.macro[k]:.2f}",
                    f"{c.xqg.macro[k]:.2f}{c.comparison.markers(m, MACRO)}",
                    f"{c.base.macro[k] - clean.base.macro[k]:+.2f}",
                    f"{c.xqg.macro[k] - clean.xqg.macro[k]:+.2f}",
                    "" if c is clean else f"{gain:+.2f} (p {p:.3g})",
                ]
            )
        report.table(
            f"robustness/{m}",
            f"Macro {m} per perturbation",
            ["condition", "questions changed", XDR, XQG, "xDR drop", "+xQG drop", "robustness gain"],
            rows,
        )
        per_lang = [
            [c.name, sys_name, *(f"{res.per_language[k][x]:.2f}{marks(c, m, x, sys_name)}" for x in langs)]
            for c in conditions
            for sys_name, res in ((XDR, c.base), (XQG, c.xqg))
        ]
        report.table(
            f"robustness/{m}_languages", f"{m} per language", ["condition", "system", *langs], per_lang
        )
    k = ks[0]
    values = {
        x: {
            XDR: [c.base.macro[k] if x == MACRO else c.base.per_language[k][x] for c in conditions],
            XQG: [c.xqg.macro[k] if x == MACRO else c.xqg.per_language[k][x] for c in conditions],
        }
        for x in [MACRO, *langs]
    }
    path = grouped_bars(
        values,
        [c.name for c in conditions],
        report.out_dir / "robustness.png",
        f"{metric_name(k)} under query perturbations (panel: language)",
        f"{metric_name(k)} (%)",
    )
    report.image("robustness/figure", path, f"{metric_name(k)} per perturbation, xDR vs +xQG, per language")
    if skipped:
        report.text("Skipped: " + "; ".join(skipped))
    report.write()


def marks(c: Condition, metric: str, lang: str, system: str) -> str:
    return c.comparison.markers(metric, lang) if system == XQG else ""
