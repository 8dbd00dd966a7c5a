"""Study (a), ``evaluate.py -m study=train_alignment``: xQG against a cross-lingual alignment objective in training,
and whether the two add up.

One job per alignment objective (``train.alignment.kind``: none = plain xDR, contrastive, distill; the multirun's
axis in ``conf/study/train_alignment.yaml``). Each job trains (or reuses) its retriever, searches the dev
questions with plain and with xQG-fused passages (``augmentation.alpha`` / ``n``, the same generated queries for
every job) and leaves its per-question hits as a cell (:mod:`xqg.tasks.studies.cells`). The report: R@2kt and R@5kt
per language of the six systems, each tested (paired t-test and randomisation test) against xDR (no alignment,
no xQG); a CSV with every difference and p-value; a bar chart per language.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from xqg.core.errors import XqgInputError
from xqg.evaluation.result import EvalResult, lang_order, metric_name
from xqg.evaluation.score_files import score_ranked
from xqg.evaluation.significance import MACRO, Comparison
from xqg.evaluation.study_plots import grouped_bars
from xqg.evaluation.tables import paper_table, significance_footnotes
from xqg.models.alignment_loss import ALIGNMENT_KINDS
from xqg.tasks import evaluate
from xqg.tasks.schema import EvaluateSettings
from xqg.tasks.score import options_from_settings
from xqg.tasks.studies.cells import Cell, compare_cells, significance_options
from xqg.tasks.studies.common import Report, study_fusion
from xqg.tasks.tracking import start_run

STUDY = "train_alignment"
REFERENCE = "xDR"
LABEL = {"none": "xDR", "contrastive": "xDR +contrastive", "distill": "xDR +distill"}
WITHOUT, WITH = "without xQG", "with xQG"


def system_name(kind: str, xqg: bool) -> str:
    return LABEL[kind] + (" +xQG" if xqg else "")


def run(settings: EvaluateSettings) -> float | None:
    """One point of the axis: train (or reuse) this objective's retriever, score it with and without xQG, write
    the cell and the report over it; returns the +xQG macro R@2kt (the multirun's objective)."""
    kind = settings.train.alignment.kind
    if kind not in ALIGNMENT_KINDS:
        raise XqgInputError(f"must be one of {ALIGNMENT_KINDS}, got {kind!r}", field="train.alignment.kind")
    out = Path(settings.paths.output_dir)
    inputs = evaluate.prepare(settings)
    if inputs is None:
        raise XqgInputError("a study searches every passage; unset retrieval.shard_index", field="retrieval")
    scoring = options_from_settings(settings.metrics, settings.paths.cache_dir)
    plain = score_ranked(inputs.questions, evaluate.search(settings, inputs), inputs.corpus, scoring)
    xqg = evaluate.xqg_search(settings, inputs, study_fusion(settings))
    fused = score_ranked(inputs.questions, evaluate.search(settings, inputs, xqg), inputs.corpus, scoring)
    a = settings.train.alignment
    cell = Cell(
        study=STUDY,
        axes={"kind": kind, "weight": a.weight},
        systems={system_name(kind, False): plain, system_name(kind, True): fused},
        significance=significance_options(scoring),
        extra={"checkpoint": str(inputs.retriever.path), "fusion": xqg.fusion.to_json()},
    )
    cell.write(out)
    path = write_report([cell], out, settings.logger, dataclasses.asdict(settings))
    print(f"{STUDY} study ({kind}): {path}")
    return float(fused.macro[min(fused.ks)])


def _ordered(cells: Sequence[Cell]) -> list[Cell]:
    return sorted(cells, key=lambda c: ALIGNMENT_KINDS.index(c.axes["kind"]))


def write_report(
    cells: Sequence[Cell], out_dir: Path, logger: Mapping[str, Any], config: Mapping[str, Any]
) -> Path:
    """``report.md``, ``train_alignment.csv`` and ``train_alignment.png`` in ``out_dir`` (and W&B)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    cells = _ordered(cells)
    systems: dict[str, EvalResult] = {name: r for c in cells for name, r in c.systems.items()}
    sig = cells[0].significance
    reference = systems.get(REFERENCE)
    comparisons: dict[str, Comparison] = {}
    if reference is not None:
        for name, r in systems.items():
            if name != REFERENCE:
                comparisons[name] = compare_cells(reference, r, sig, REFERENCE, name)
    tracker = start_run(logger, config=dict(config), job_type=f"study_{STUDY}")
    report = Report(out_dir, "xQG against cross-lingual alignment in training", tracker)
    try:
        _write(report, cells, systems, comparisons, sig)
        return report.write()
    finally:
        tracker.finish()


def _write(
    report: Report,
    cells: Sequence[Cell],
    systems: dict[str, EvalResult],
    comparisons: dict[str, Comparison],
    sig: Mapping[str, Any],
) -> None:
    first = next(iter(systems.values()))
    ks = list(first.ks)
    langs = lang_order(first.question_lang.values())
    fusion = cells[0].extra.get("fusion", {})
    report.text(
        f"{len(first.question_lang)} dev questions ({', '.join(langs)}). Alignment objectives: "
        + ", ".join(f"`{c.axes['kind']}` (weight {c.axes['weight']})" for c in cells)
        + f". xQG: alpha {fusion.get('alpha')}, n {fusion.get('n')}, mode {fusion.get('mode')}. "
        "Every system is tested against xDR (no alignment objective, no xQG) on the same questions.\n\n"
        "Checkpoints: " + "; ".join(f"`{c.axes['kind']}`: {c.extra.get('checkpoint')}" for c in cells)
    )
    if not comparisons:
        report.text("This run has no xDR job (`train.alignment.kind=none`): no significance tests.")
    markers = {name: comp.marker_map() for name, comp in comparisons.items()}
    table = paper_table(
        {name: r.to_json() for name, r in systems.items()},
        markers=markers,
        fmt="markdown",
        decimals=2,
        footnotes=significance_footnotes(float(sig["level"]), REFERENCE, list(sig["tests"])),
    )
    report.text("### R@kt per language\n\n" + table)
    meta = {system_name(c.axes["kind"], x): (c.axes["kind"], x) for c in cells for x in (False, True)}
    rows = _csv_rows(systems, meta, comparisons, ks, langs)
    columns = [
        "system",
        "kind",
        "xqg",
        "metric",
        "lang",
        "value",
        "diff_vs_xdr",
        "p_ttest",
        "p_randomization",
    ]
    report.csv(f"{STUDY}.csv", columns, rows)
    report.tracker.log_table(STUDY, columns, [[str(c) for c in r] for r in rows])
    report.tracker.log_summary({f"{r[0]}/{r[3]}/{r[4]}": r[5] for r in rows})
    values: dict[str, dict[str, list[float]]] = {}
    k = ks[0]
    kinds = [c.axes["kind"] for c in cells]
    for lang in [*langs, MACRO]:
        per = {}
        for label, xqg in ((WITHOUT, False), (WITH, True)):
            per[label] = [_value(systems[system_name(kd, xqg)], k, lang) for kd in kinds]
        values[lang] = per
    png = grouped_bars(
        values,
        [LABEL[kd] for kd in kinds],
        report.out_dir / f"{STUDY}.png",
        f"{metric_name(k)} by alignment objective, without and with xQG",
        f"{metric_name(k)} (%)",
    )
    report.image(f"{STUDY}_plot", png, f"{metric_name(k)} per language (macro last) by alignment objective")
    _write_csv_note(report)


def _value(r: EvalResult, k: int, lang: str) -> float:
    return float(r.macro[k]) if lang == MACRO else float(r.per_language[k].get(lang, float("nan")))


def _csv_rows(
    systems: dict[str, EvalResult],
    meta: Mapping[str, tuple[str, bool]],
    comparisons: dict[str, Comparison],
    ks: list[int],
    langs: list[str],
) -> list[list[Any]]:
    rows = []
    for name, r in systems.items():
        kind, xqg = meta[name]
        comp = comparisons.get(name)
        for k in ks:
            m = metric_name(k)
            for lang in [*langs, MACRO]:
                tests = comp.tests.get(m, {}).get(lang, {}) if comp else {}
                diff = next((t.diff for t in tests.values()), 0.0 if name == REFERENCE else "")
                rows.append(
                    [
                        name,
                        kind,
                        xqg,
                        m,
                        lang,
                        round(_value(r, k, lang), 4),
                        round(diff, 4) if isinstance(diff, float) else diff,
                        _p(tests, "ttest"),
                        _p(tests, "randomization"),
                    ]
                )
    return rows


def _p(tests: Mapping[str, Any], name: str) -> str | float:
    return round(float(tests[name].p_value), 6) if name in tests else ""


def _write_csv_note(report: Report) -> None:
    report.text(
        f"`{STUDY}.csv`: one row per system, metric and language (macro last): the value, its difference from "
        "xDR in points and both tests' p-values."
    )
