"""Study (b), ``evaluate.py -m study=train_scaling``: how the retriever improves as generated training queries
(SWIM-IR style, :mod:`xqg.tasks.synthetic_train`) cover more languages, with and without a few real examples.

One job per point of the grid ``train.synthetic.max_languages`` (the first N of ``train.synthetic.languages``) x
``train.synthetic.few_shot`` (real training examples kept). Each job trains (or reuses) its retriever on the mix
and scores the dev questions: Recall@20 of the gold passage (qrels) and R@kt, per language. The report: a table
per measure (rows: few-shot size, columns: number of synthetic languages; macro and per language), the long CSV,
and a scaling plot (the measure against the number of languages, one line per few-shot size, one panel per
language and the macro average).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from xqg.core.errors import XqgInputError
from xqg.data.formats.qrels import read_qrels
from xqg.evaluation.gold_measures import GoldOptions, with_gold
from xqg.evaluation.result import EvalResult, lang_order, metric_name
from xqg.evaluation.score_files import score_ranked
from xqg.evaluation.significance import MACRO
from xqg.tasks import evaluate
from xqg.tasks.schema import EvaluateSettings
from xqg.tasks.score import options_from_settings
from xqg.tasks.studies.cells import Cell, significance_options
from xqg.tasks.studies.common import Report
from xqg.tasks.tracking import start_run

STUDY = "train_scaling"
SYSTEM = "xDR +synthetic"
RECALL = "Recall@20"


def run(settings: EvaluateSettings) -> float | None:
    """One grid point: train (or reuse) the retriever on this mix, score it, write the cell and its report;
    returns the macro Recall@20 of the gold passage."""
    syn = settings.train.synthetic
    if not syn.enabled:
        raise XqgInputError("the scaling study trains on synthetic queries", field="train.synthetic.enabled")
    data = settings.data.bundle(settings.paths.cache_dir)
    qrels_path = data.qrels.get(settings.retrieval.split)
    if qrels_path is None:
        raise XqgInputError(
            f"data {data.name!r} has no gold passages (qrels) for {settings.retrieval.split}", field="data"
        )
    inputs = evaluate.prepare(settings)
    if inputs is None:
        raise XqgInputError("a study searches every passage; unset retrieval.shard_index", field="retrieval")
    scoring = options_from_settings(settings.metrics, settings.paths.cache_dir)
    ranked = evaluate.search(settings, inputs)
    result = score_ranked(inputs.questions, ranked, inputs.corpus, scoring)
    result = with_gold(result, ranked, read_qrels(qrels_path), GoldOptions(mrr_depth=0, recall_ks=(20,)))
    n_langs = syn.max_languages if syn.max_languages is not None else len(syn.languages)
    cell = Cell(
        study=STUDY,
        axes={"languages": n_langs, "few_shot": syn.few_shot},
        systems={SYSTEM: result},
        significance=significance_options(scoring),
        extra={
            "checkpoint": str(inputs.retriever.path),
            "synthetic_languages": list(syn.languages[:n_langs]),
        },
    )
    out = Path(settings.paths.output_dir)
    cell.write(out)
    path = write_report([cell], out, settings.logger, dataclasses.asdict(settings))
    print(f"{STUDY} study ({n_langs} languages, few-shot {syn.few_shot}): {path}")
    return _macro(result, RECALL)


def _macro(r: EvalResult, measure: str) -> float:
    block = r.to_json()[measure]
    return float(block["macro"])


def _value(r: EvalResult, measure: str, lang: str) -> float:
    block = r.to_json()[measure]
    return float(block.get(lang, math.nan))


def _few(v: Any) -> str:
    return "all" if v is None else str(v)


def write_report(
    cells: Sequence[Cell], out_dir: Path, logger: Mapping[str, Any], config: Mapping[str, Any]
) -> Path:
    """``report.md``, ``train_scaling.csv`` and ``train_scaling.png`` in ``out_dir`` (and W&B)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tracker = start_run(logger, config=dict(config), job_type=f"study_{STUDY}")
    report = Report(out_dir, "Synthetic training queries: scaling over languages and few-shot size", tracker)
    try:
        _write(report, cells)
        return report.write()
    finally:
        tracker.finish()


def _write(report: Report, cells: Sequence[Cell]) -> None:
    first = cells[0].systems[SYSTEM]
    langs = lang_order(first.question_lang.values())
    measures = [RECALL, *(metric_name(k) for k in first.ks)]
    n_langs = sorted({int(c.axes["languages"]) for c in cells})
    shots = sorted({c.axes["few_shot"] for c in cells}, key=lambda v: math.inf if v is None else v)
    grid = {(int(c.axes["languages"]), c.axes["few_shot"]): c for c in cells}
    longest = max(cells, key=lambda c: len(c.extra.get("synthetic_languages", [])))
    report.text(
        f"{len(first.question_lang)} dev questions ({', '.join(langs)}). Synthetic languages are added in the "
        f"order {', '.join(longest.extra.get('synthetic_languages', []))}; few-shot = real training examples "
        f"kept (all: every one). {RECALL}: the gold passage (qrels) in the top 20; R@kt: the answer in the top "
        "k thousand tokens (XOR-Retrieve's rule). Cells are macro averages over languages, in percent."
    )
    for measure in measures:
        rows = []
        for shot in shots:
            row: list[Any] = [_few(shot)]
            for n in n_langs:
                c = grid.get((n, shot))
                row.append(f"{_macro(c.systems[SYSTEM], measure):.2f}" if c else "")
            rows.append(row)
        columns = ["few-shot \\ synthetic languages", *(str(n) for n in n_langs)]
        report.table(f"{STUDY}_{measure}", f"{measure} (macro)", columns, rows)
    rows_csv = []
    for c in cells:
        r = c.systems[SYSTEM]
        for measure in measures:
            for lang in [*langs, MACRO]:
                value = _macro(r, measure) if lang == MACRO else _value(r, measure, lang)
                rows_csv.append(
                    [c.axes["languages"], _few(c.axes["few_shot"]), measure, lang, round(value, 4)]
                )
    columns = ["synthetic_languages", "few_shot", "measure", "lang", "value"]
    report.csv(f"{STUDY}.csv", columns, rows_csv)
    report.tracker.log_table(STUDY, columns, [[str(v) for v in r] for r in rows_csv])
    per_lang = [[lang, *(_cell(grid.get((n, s)), lang) for s in shots for n in n_langs)] for lang in langs]
    report.table(
        f"{STUDY}_per_language",
        f"{RECALL} per language (columns: few-shot / synthetic languages)",
        ["lang", *(f"{_few(s)}/{n}" for s in shots for n in n_langs)],
        per_lang,
    )
    png = scaling_plot(cells, langs, n_langs, shots, report.out_dir / f"{STUDY}.png")
    report.image(
        f"{STUDY}_plot", png, f"{RECALL} against the number of synthetic languages, per few-shot size"
    )
    report.text(f"`{STUDY}.csv`: every measure per grid point and language (macro last).")


def _cell(c: Cell | None, lang: str) -> str:
    return f"{_value(c.systems[SYSTEM], RECALL, lang):.1f}" if c is not None else ""


def scaling_plot(
    cells: Sequence[Cell], langs: list[str], n_langs: list[int], shots: list[Any], path: Path
) -> Path:
    """One panel per language (macro last): the measure against the number of synthetic languages, one line
    per few-shot size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = {(int(c.axes["languages"]), c.axes["few_shot"]): c.systems[SYSTEM] for c in cells}
    panels = [*langs, MACRO]
    ncols = 4
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.0 * ncols, 3.0 * nrows), squeeze=False, sharey=True)
    flat = axes.ravel()
    for ax, lang in zip(flat, panels, strict=False):
        for shot in shots:
            xs = [n for n in n_langs if (n, shot) in grid]
            ys = [
                _macro(grid[(n, shot)], RECALL) if lang == MACRO else _value(grid[(n, shot)], RECALL, lang)
                for n in xs
            ]
            ax.plot(xs, ys, marker="o", label=f"few-shot {_few(shot)}")
        ax.set_title(lang)
        ax.set_xlabel("synthetic languages")
        ax.set_ylabel(f"{RECALL} (%)")
        ax.set_xticks(n_langs)
        ax.grid(alpha=0.3)
    for ax in flat[len(panels) :]:
        ax.axis("off")
    flat[0].legend(fontsize=7)
    fig.suptitle(f"{RECALL} of the gold passage by number of synthetic training languages")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
