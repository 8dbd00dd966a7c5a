"""Study 3, ``evaluate.py data=xquad_r study=xquad_r``: does xQG help retrieval on XQuAD-R (LAReQA), against a
plain multilingual encoder?

Three systems search the same questions (``retrieval.split`` of the data, every query language): the backbone as
loaded (no retrieval training), the xDR retriever trained on the data's training split, and xDR with its passages
fused with generated queries (``augmentation.alpha`` / ``n``; queries from the project's generator trained on the
data's generator pairs, or imported with ``generator.queries_source``). Every stage is the evaluation pipeline's
(cached embeddings, runs, generated queries). Measures of the gold paragraph from the data's qrels through
:mod:`xqg.evaluation.qrels_measures` (trec_eval's definitions): mAP@20 (LAReQA's metric) and Recall@k, per
language and macro, with paired tests per language: xDR against the backbone, +xQG against xDR.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence

import numpy as np

from xqg.core.errors import XqgInputError
from xqg.data.formats.qrels import read_qrels
from xqg.evaluation.qrels_measures import QrelsScores, qrels_measures
from xqg.evaluation.result import lang_order
from xqg.evaluation.significance import MACRO, MARKERS, paired_randomization, paired_ttest
from xqg.evaluation.study_plots import grouped_bars
from xqg.tasks import evaluate as pipeline
from xqg.tasks.schema import EvaluateSettings
from xqg.tasks.studies.common import Report, backbone_checkpoint, open_report, query_source, study_fusion

log = logging.getLogger(__name__)
BACKBONE, XDR, XQG = "backbone", "xDR", "+xQG"
#: (system, against): the paired comparisons reported
COMPARISONS = ((XDR, BACKBONE), (XQG, XDR))


def measures(settings: EvaluateSettings) -> list[str]:
    x = settings.study.xquad_r
    if x.map_depth < 1 or not x.ks or min(x.ks) < 1:
        raise XqgInputError("map_depth and every k must be >= 1", field="study.xquad_r")
    return [f"mAP@{x.map_depth}", *(f"Recall@{k}" for k in x.ks)]


def paired(
    a: Mapping[str, float], b: Mapping[str, float], lang_of: Mapping[str, str], permutations: int, seed: int
) -> dict[str, tuple[float, float, float]]:
    """Per language and macro: ``(b - a in points, t-test p, randomisation p)`` over the shared questions; the
    macro test weighs a question of language l by ``N / (L n_l)`` (as R@kt's macro)."""
    qids = [q for q in a if q in b]
    langs = lang_order(lang_of[q] for q in qids)
    lang = np.array([langs.index(lang_of[q]) for q in qids])
    xa = np.array([a[q] for q in qids])
    xb = np.array([b[q] for q in qids])
    n_l = np.bincount(lang, minlength=len(langs)).astype(np.float64)
    w = len(qids) / (len(langs) * n_l[lang])
    out = {}
    for i, group in enumerate([*langs, MACRO]):
        mask = lang == i if group != MACRO else np.ones(len(qids), dtype=bool)
        ga, gb = (xa[mask], xb[mask]) if group != MACRO else (xa * w, xb * w)
        sub = int(np.random.SeedSequence([seed, i]).generate_state(1)[0])
        t = paired_ttest(ga, gb)
        r = paired_randomization(gb - ga, permutations, sub)
        out[group] = (t.diff, t.p_value, r.p_value)
    return out


def run(settings: EvaluateSettings) -> float | None:
    """Search with the three systems, score the gold paragraphs, test, write the report; returns None."""
    names = measures(settings)
    data = settings.data.bundle(settings.paths.cache_dir)
    qrels_path = data.qrels.get(settings.retrieval.split)
    if qrels_path is None:
        raise XqgInputError(
            f"data {data.name!r} has no qrels for split {settings.retrieval.split!r} (gold paragraphs)",
            field="data",
        )
    qrels = read_qrels(qrels_path)
    backbone = dataclasses.replace(
        settings, retrieval=dataclasses.replace(settings.retrieval, checkpoint=backbone_checkpoint(settings))
    )
    runs = {}
    inputs = None
    for system, s in ((BACKBONE, backbone), (XDR, settings)):
        inputs = pipeline.prepare(s)
        if inputs is None:
            raise XqgInputError("a study needs the whole corpus encoded; unset retrieval.shard_index")
        runs[system] = pipeline.search(s, inputs)
    assert inputs is not None  # the xDR inputs
    runs[XQG] = pipeline.search(
        settings, inputs, pipeline.xqg_search(settings, inputs, study_fusion(settings))
    )
    lang_of = {q.qid: q.lang for q in inputs.questions}
    scores = {k: qrels_measures(r, qrels, names, qids=lang_of) for k, r in runs.items()}
    report = open_report(settings, "Gold-paragraph retrieval on XQuAD-R: backbone, xDR, +xQG")
    try:
        write_report(report, settings, scores, lang_of, names, str(qrels_path))
    finally:
        report.tracker.finish()
    print(f"xquad_r study report: {report.out_dir / 'report.md'}")
    return None


def write_report(
    report: Report,
    settings: EvaluateSettings,
    scores: Mapping[str, QrelsScores],
    lang_of: Mapping[str, str],
    names: Sequence[str],
    qrels: str,
) -> None:
    sig = settings.metrics.significance
    groups = {k: v.by_group(lang_of) for k, v in scores.items()}
    langs = [x for x in lang_order(lang_of.values()) if x in groups[XDR]]
    cols = [*langs, MACRO]
    tests = {
        (b, a, m): paired(scores[a].per_query[m], scores[b].per_query[m], lang_of, sig.permutations, sig.seed)
        for b, a in COMPARISONS
        for m in names
    }
    fusion = study_fusion(settings).to_json()
    report.text(
        f"Data: {settings.data.name} ({settings.data.unit}s), split {settings.retrieval.split}: "
        f"{len(scores[XDR].queries)} questions in {len(langs)} languages; gold from {qrels}. "
        f"+xQG: alpha {fusion['alpha']}, n {fusion['n']}, mode {fusion['mode']}, {query_source(settings)}. "
        "Values in percent "
        "(trec_eval's definitions through ir_measures). Markers: on the xDR row against the backbone, on the "
        f"+xQG row against xDR; † paired t-test, ‡ paired randomisation test (level {sig.level}), ↓ a "
        "significant loss.\n"
    )
    csv_rows = []
    for m in names:
        rows = []
        for system in (BACKBONE, XDR, XQG):
            against = dict(COMPARISONS).get(system)
            cells = []
            for g in cols:
                value = 100 * groups[system][g][m]
                mark = ""
                diff, p_t, p_r = (None, None, None)
                if against is not None:
                    diff, p_t, p_r = tests[(system, against, m)][g]
                    sig_marks = [
                        MARKERS[t] for t, p in (("ttest", p_t), ("randomization", p_r)) if p < sig.level
                    ]
                    mark = ("↓" if sig_marks and diff < 0 else "") + "".join(sig_marks)
                cells.append(f"{value:.2f}{mark}")
                csv_rows.append(
                    [
                        m,
                        system,
                        g,
                        f"{value:.4f}",
                        against or "",
                        *(("" if x is None else f"{x:.4g}") for x in (diff, p_t, p_r)),
                    ]
                )
            rows.append([system, *cells])
        report.table(f"xquad_r/{m}", m, ["system", *cols], rows)
    report.csv(
        "xquad_r.csv",
        ["measure", "system", "lang", "value", "against", "diff", "p_ttest", "p_randomization"],
        csv_rows,
    )
    values = {m: {s: [100 * groups[s][g][m] for g in cols] for s in (BACKBONE, XDR, XQG)} for m in names}
    path = grouped_bars(values, cols, report.out_dir / "xquad_r.png", "XQuAD-R gold-paragraph retrieval", "%")
    report.image("xquad_r/figure", path, "Gold-paragraph measures per language (panel: measure)")
    report.write()
