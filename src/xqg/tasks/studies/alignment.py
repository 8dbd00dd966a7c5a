"""Study 1, ``evaluate.py study=alignment``: how training choices and xQG change the alignment of query and passage
embeddings across languages, on XQuAD's parallel questions and paragraphs.

Model states: the backbone as loaded, the zero-shot retriever (English training questions only), the xDR retriever
(cross-lingual training data), and each trained one with its passages fused with generated queries (xQG). For
each state and language L: questions in L and in the pivot (English) and the pivot paragraphs are encoded (cached
embedding artifacts), and the metrics of :mod:`xqg.evaluation.alignment` are measured with bootstrap intervals
over questions. xQG changes passages only, so the question-side metrics (cosine to English, translation
retrieval, CKA) of an ``*_xqg`` state equal those of its retriever.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xqg.core.artifacts import ArtifactDir, file_fingerprint
from xqg.core.device import resolve_device
from xqg.core.errors import XqgInputError
from xqg.core.locking import complete_or_claim
from xqg.core.staging import staged_artifact
from xqg.data.corpus import CorpusStore, open_corpus
from xqg.data.formats.dpr import write_dpr_tsv
from xqg.data.xquad import ParallelXquad, load_parallel_xquad
from xqg.evaluation import alignment as al
from xqg.evaluation.study_plots import heatmaps
from xqg.retrieval.embeddings import encode_corpus, encode_queries
from xqg.retrieval.encode import Retriever
from xqg.retrieval.fusion import FusionTransform
from xqg.retrieval.query_sums_build import ensure_query_sums
from xqg.tasks.generate import ensure_generated
from xqg.tasks.schema import EvaluateSettings
from xqg.tasks.studies.common import (
    Report,
    backbone_checkpoint,
    fmt_ci,
    open_report,
    query_source,
    study_fusion,
    trained_checkpoint,
)
from xqg.tasks.study_settings import ALIGNMENT_STATES

log = logging.getLogger(__name__)

#: metric key -> (figure panel, table heading, whether the pivot language has a meaningful value)
METRICS = {
    "cosine": ("cosine to English", "Mean cosine of a question in L and its English version", False),
    "margin": ("gold margin", "Gold-paragraph margin: cos(q, gold) - mean cos(q, other paragraphs)", True),
    "hard_margin": ("rank-1 margin", "Rank-1 margin: cos(q, gold) - max cos(q, other paragraphs)", True),
    "translation": (
        "translation accuracy",
        "Translation retrieval accuracy (top 1 among all English questions)",
        False,
    ),
    "mi": (
        "InfoNCE bound (nats)",
        "InfoNCE lower bound on I(question; paragraph), nats (capped at log N)",
        True,
    ),
    "cka": ("linear CKA", "Linear CKA between the question spaces of L and English", False),
}
STATE_SOURCE = {"zero_shot": "english", "xdr": "xor"}
QUESTION_SIDE = ("cosine", "translation", "cka")  # metrics that read only the questions' embeddings


@dataclass
class StateEmbeddings:
    checkpoint: str
    questions: dict[str, np.ndarray]  # lang -> (questions, dim)
    passages: np.ndarray  # pivot paragraphs (fused for *_xqg states)


def pivot_corpus(settings: EvaluateSettings, data: ParallelXquad, source: Path, pivot: str) -> CorpusStore:
    """The pivot paragraphs as a DPR TSV corpus in ``<cache>/xquad_corpus/<fp>/`` (what encoding, generation and
    fusion take), opened as a corpus store."""
    cache = settings.paths.cache_dir
    art = ArtifactDir.for_spec(
        cache,
        "xquad_corpus",
        config={"pivot": pivot, "max_articles": settings.study.alignment.max_articles},
        inputs={"file": file_fingerprint(source / f"xquad.{pivot}.json")},
        code_version="1",
    )
    if not complete_or_claim(art):
        with staged_artifact(art) as staging:
            n = write_dpr_tsv(staging.path / "corpus.tsv", data.paragraphs[pivot])
            staging.finalize(counts={"paragraphs": n})
    return open_corpus(art.path / "corpus.tsv", cache)


def encode_state(
    settings: EvaluateSettings, state: str, data: ParallelXquad, corpus: CorpusStore
) -> StateEmbeddings:
    """Questions of every language and the pivot paragraphs under one model state (all cached)."""
    r, cache = settings.retrieval, settings.paths.cache_dir
    base = state.removesuffix("_xqg")
    path = (
        backbone_checkpoint(settings)
        if base == "backbone"
        else trained_checkpoint(settings, STATE_SOURCE[base])
    )
    retriever = Retriever(path, resolve_device(r.device))
    questions = {}
    for lang in data.languages:
        store = encode_queries(
            retriever,
            [f"{q}-{lang}" for q in data.qids],
            list(data.questions[lang]),
            cache,
            batch_size=r.query_batch_size,
            max_len=r.q_max_len,
        )
        questions[lang] = store.load()
    passages = encode_corpus(
        retriever, corpus, cache, dtype="fp32", batch_size=r.passage_batch_size, max_len=r.p_max_len
    )
    assert passages is not None  # not sharded
    matrix = passages.load()
    if state.endswith("_xqg"):
        sums = ensure_query_sums(
            ensure_generated(settings, corpus),
            retriever,
            passages,
            cache,
            settings.augmentation.query_sums,
            batch_size=r.query_batch_size,
            max_len=r.q_max_len,
        )
        matrix = FusionTransform(sums, study_fusion(settings))(0, list(passages.ids), matrix)
    return StateEmbeddings(path, questions, matrix)


def measure(
    emb: StateEmbeddings,
    data: ParallelXquad,
    pivot: str,
    settings: EvaluateSettings,
    question_side: list[list] | None = None,
) -> list[list]:
    """Rows ``[metric, lang, value, ci_low, ci_high, n]`` for one state; ``question_side`` (rows of a state with
    the same question embeddings: an xQG state's retriever) is reused for the metrics that read questions only."""
    st = settings.study
    gold = np.asarray(data.gold)
    boot = {"resamples": st.bootstrap, "seed": st.seed, "confidence": st.confidence}
    own_questions = question_side is None
    rows = [] if own_questions else [r for r in question_side if r[0] in QUESTION_SIDE]
    for lang in data.languages:
        q, en = emb.questions[lang], emb.questions[pivot]
        per_question = {}
        if own_questions and lang != pivot:
            per_question["cosine"] = al.paired_cosine(q, en)
            per_question["translation"] = al.translation_hits(q, en)
        per_question["margin"], per_question["hard_margin"] = al.gold_margin(q, emb.passages, gold)
        per_question["mi"] = al.infonce(q, emb.passages, gold, st.alignment.mi_folds, st.seed).terms
        for metric, values in per_question.items():
            lo, hi = al.bootstrap_mean_ci(values, **boot)
            rows.append([metric, lang, float(values.mean()), lo, hi, len(values)])
        if own_questions and lang != pivot:
            lo, hi = al.bootstrap_cka(q, en, **boot)
            rows.append(["cka", lang, al.linear_cka(q, en), lo, hi, len(q)])
    return rows


def _check(settings: EvaluateSettings) -> None:
    a = settings.study.alignment
    bad = [s for s in a.states if s not in ALIGNMENT_STATES]
    if bad or not a.states:
        raise XqgInputError(
            f"unknown state(s) {bad}; choose from {list(ALIGNMENT_STATES)}", field="study.alignment.states"
        )
    if a.mi_folds < 1:
        raise XqgInputError(f"must be >= 1, got {a.mi_folds}", field="study.alignment.mi_folds")


def run(settings: EvaluateSettings) -> float | None:
    """Measure every state, write the report; returns None (a study has no sweep objective)."""
    _check(settings)
    a = settings.study.alignment
    source = Path(a.source)
    data = load_parallel_xquad(source, a.languages, a.pivot, a.max_articles)
    pivot = data.languages[0]
    corpus = pivot_corpus(settings, data, source, pivot)
    results: dict[str, list[list]] = {}
    checkpoints = {}
    for state in a.states:
        log.info("alignment study: state %s", state)
        emb = encode_state(settings, state, data, corpus)
        checkpoints[state] = emb.checkpoint
        base = state.removesuffix("_xqg")
        same_questions = results.get(base) if base != state else None
        results[state] = measure(emb, data, pivot, settings, same_questions)
    report = open_report(settings, "Alignment of query and passage embeddings across languages (XQuAD)")
    try:
        write_report(report, settings, data, pivot, results, checkpoints)
    finally:
        report.tracker.finish()
    print(f"alignment study report: {report.out_dir / 'report.md'}")
    return None


def write_report(
    report: Report,
    settings: EvaluateSettings,
    data: ParallelXquad,
    pivot: str,
    results: dict[str, list[list]],
    checkpoints: dict[str, str],
) -> None:
    st = settings.study
    states = list(results)
    langs = [x for x in data.languages if x != pivot] + [pivot]
    fusion = study_fusion(settings).to_json()
    report.text(
        f"Data: XQuAD ({st.alignment.source}), {len(data.qids)} parallel questions, "
        f"{len(data.paragraphs[pivot])} {pivot} paragraphs (N for the InfoNCE bound: log N = "
        f"{np.log(len(data.paragraphs[pivot])):.3f} nats), languages {', '.join(langs)}.\n\n"
        f"Passages are the {pivot} paragraphs; xQG states fuse them with generated queries "
        f"(alpha {fusion['alpha']}, n {fusion['n']}, mode {fusion['mode']}; {query_source(settings)}). "
        "Cells: mean over questions "
        f"[{st.confidence:.0%} percentile bootstrap interval, {st.bootstrap} resamples, seed {st.seed}]; "
        "'avg' is the mean over the non-pivot languages. xQG changes passages only: the question-side metrics "
        "of an *_xqg state equal its retriever's.\n\n"
        "Model states: " + "; ".join(f"`{s}`: {checkpoints[s]}" for s in states) + "\n"
    )
    csv_rows = [[s, *r] for s in states for r in results[s]]
    report.csv("alignment.csv", ["state", "metric", "lang", "value", "ci_low", "ci_high", "n"], csv_rows)
    panels = {}
    for metric, (panel, heading, with_pivot) in METRICS.items():
        cols = [x for x in langs if with_pivot or x != pivot]
        cell = {(s, r[1]): r for s in states for r in results[s] if r[0] == metric}
        matrix = np.array([[cell[(s, lang)][2] for lang in cols] for s in states])
        avg = [float(np.mean([cell[(s, x)][2] for x in cols if x != pivot])) for s in states]
        rows = [
            [s, *(fmt_ci(*cell[(s, lang)][2:5]) for lang in cols), f"{avg[i]:.3f}"]
            for i, s in enumerate(states)
        ]
        report.table(f"alignment/{metric}", heading, ["state", *cols, "avg"], rows)
        report.csv(
            f"alignment_{metric}.csv",
            ["state", *cols, "avg"],
            [[s, *(f"{v:.4f}" for v in matrix[i]), f"{avg[i]:.4f}"] for i, s in enumerate(states)],
        )
        # one column set for the figure: every language, NaN where a metric has no pivot value
        panels[panel] = matrix if with_pivot else np.column_stack([matrix, np.full(len(states), np.nan)])
    path = heatmaps(
        panels, states, langs, report.out_dir / "alignment_heatmaps.png", "Alignment (XQuAD)", decimals=3
    )
    report.image(
        "alignment/heatmaps", path, "Alignment metrics per model state (rows) and language (columns)"
    )
    report.text(ESTIMATOR_NOTE)
    report.write()


ESTIMATOR_NOTE = """### About the estimators

- **InfoNCE** (van den Oord et al. 2018; Poole et al. 2019): `I(Q; P) >= log N - L_NCE` with N candidate
  paragraphs and the critic `s * cos(q, p)`; the scale `s >= 0` is fitted on the other fold's questions
  (cross-fitting), so independent embeddings give ~0 and `s = 0` (no dependence) gives exactly 0. The bound is
  capped at `log N`: a state near the cap may hide more information, and values are comparable only at the same N.
  It is a lower bound for this critic family: a low value says a cosine critic finds little, not that there is no
  shared information.
- **Linear CKA** (Kornblith et al. 2019) has a finite-sample positive bias of about d/n for unrelated spaces (d the
  embedding size, n the questions): read small values against that floor.
- Bootstrap intervals resample questions (the unit of the data), with the metric recomputed (CKA) or averaged.
"""
