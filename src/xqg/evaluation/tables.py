"""Tables in the paper's layout: one row per (metric, system), languages as columns (ar bn fi ja ko ru te), Avg
last, optional significance markers; plain text for terminals and logs, Markdown for READMEs and reports,
LaTeX (booktabs: ``\\usepackage{booktabs}``) for papers.

Tables are built from the metrics JSON (``EvalResult.to_json()``, also what ``results.json`` holds), so any saved
result can be tabulated again without re-scoring.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from xqg.evaluation.result import lang_order
from xqg.evaluation.significance import LOSS, MARKERS

AVG = "Avg"
FORMATS = ("text", "markdown", "latex")
COUNTS = "questions"  # the label of the last row: scored questions per language
# LaTeX for the characters a table can hold that LaTeX does not take as they are
_LATEX = {
    "†": r"\textsuperscript{\dag}",
    "‡": r"\textsuperscript{\ddag}",
    LOSS: r"\textsuperscript{$\downarrow$}",
    "&": r"\&",
    "%": r"\%",
    "_": r"\_",
    "#": r"\#",
    "$": r"\$",
    "{": r"\{",
    "}": r"\}",
    "<": r"$<$",
    ">": r"$>$",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "\\": r"\textbackslash{}",
}


def _metrics_of(systems: Mapping[str, Mapping[str, Any]]) -> list[str]:
    seen: dict[str, None] = {}
    for res in systems.values():
        for m, block in res.items():
            if isinstance(block, Mapping) and "macro" in block:
                seen.setdefault(m, None)
    return sorted(seen, key=_metric_order)


def _metric_order(m: str) -> tuple[int, str, int]:
    """R@kt by k first, then other measures by name and cutoff (MRR@10, Recall@1, Recall@5, Recall@20, ...)."""
    if m.startswith("R@") and m.endswith("kt") and m[2:-2].isdigit():
        return (0, "", int(m[2:-2]))
    name, _, cut = m.partition("@")
    return (1, name, int(cut) if cut.isdigit() else 1 << 30)


def _languages_of(systems: Mapping[str, Mapping[str, Any]], metrics: Sequence[str]) -> list[str]:
    langs: set[str] = set()
    for res in systems.values():
        for m in metrics:
            block = res.get(m, {})
            langs.update(x for x in block if x not in ("macro", "count"))
    return lang_order(langs)


def paper_table(
    systems: Mapping[str, Mapping[str, Any]],
    *,
    metrics: Sequence[str] | None = None,
    languages: Sequence[str] | None = None,
    markers: Mapping[str, Mapping[tuple[str, str], str]] | None = None,
    fmt: str = "text",
    decimals: int = 2,
    counts: bool = True,
    footnotes: Sequence[str] = (),
) -> str:
    """Render ``{system name: metrics JSON}`` as the paper's table.

    ``markers``: ``{system name: {(metric, lang or 'macro'): '†‡'}}`` appended to that cell. ``counts`` adds a
    last row, ``questions``, with the number of scored questions per language (total under Avg), taken from the
    first system. ``fmt``: ``text``, ``markdown`` or ``latex`` (a booktabs ``tabular``, footnotes under it).
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown table format {fmt!r}; expected one of {FORMATS}")
    metrics = list(metrics) if metrics is not None else _metrics_of(systems)
    langs = list(languages) if languages is not None else _languages_of(systems, metrics)
    header = ["System", "Metric", *langs, AVG]
    rows: list[list[str]] = []
    markers = markers or {}
    for m in metrics:
        for name, res in systems.items():
            block = res.get(m)
            if block is None:
                continue
            mk = markers.get(name, {})
            cells = [name, m]
            for lang in langs:
                v = block.get(lang)
                cells.append("-" if v is None else f"{v:.{decimals}f}{mk.get((m, lang), '')}")
            cells.append(f"{block['macro']:.{decimals}f}{mk.get((m, 'macro'), '')}")
            rows.append(cells)
    if counts and systems:
        first = next(iter(systems.values()))
        cnt = next((first[m]["count"] for m in metrics if m in first and "count" in first[m]), None)
        if cnt:
            rows.append(["", COUNTS, *[str(cnt.get(lang, "-")) for lang in langs], str(sum(cnt.values()))])
    if fmt == "latex":
        return _latex(header, rows, footnotes)
    if fmt == "markdown":
        out = [
            "| " + " | ".join(header) + " |",
            "|" + "|".join(["---", "---"] + ["---:"] * (len(header) - 2)) + "|",
        ]
        out += ["| " + " | ".join(r) + " |" for r in rows]
    else:
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

        def line(cells: Sequence[str]) -> str:
            left = [cells[i].ljust(widths[i]) for i in range(2)]
            right = [cells[i].rjust(widths[i]) for i in range(2, len(cells))]
            return "  ".join(left + right).rstrip()

        rule = "-" * len(line(header))
        out = [line(header), rule, *[line(r) for r in rows]]
    if footnotes:
        out.append("")
        out += list(footnotes)
    return "\n".join(out)


def _latex_escape(text: str) -> str:
    return "".join(_LATEX.get(c, c) for c in text)


def _latex(header: Sequence[str], rows: Sequence[Sequence[str]], footnotes: Sequence[str]) -> str:
    """A booktabs ``tabular``: a rule between metrics and above the question counts; footnotes as full-width
    rows under the bottom rule, so the table is one self-contained block to ``\\input``."""
    width = len(header)
    out = [
        r"\begin{tabular}{ll" + "r" * (width - 2) + "}",
        r"\toprule",
        " & ".join(_latex_escape(c) for c in header) + r" \\",
        r"\midrule",
    ]
    previous = None
    for r in rows:
        if previous is not None and r[1] != previous:
            out.append(r"\midrule")
        previous = r[1]
        out.append(" & ".join(_latex_escape(c) for c in r) + r" \\")
    out.append(r"\bottomrule")
    out += [rf"\multicolumn{{{width}}}{{l}}{{\footnotesize {_latex_escape(f)}}} \\" for f in footnotes if f]
    out.append(r"\end{tabular}")
    return "\n".join(out)


def significance_footnotes(
    level: float, name_a: str, tests: Sequence[str], correction: str = "none", family: int = 0
) -> list[str]:
    """The legend for the markers :class:`xqg.evaluation.significance.Comparison` puts on the second system
    (``level``: the significance level the markers use): a marker alone is a significant gain, after ``↓`` a
    significant loss. ``correction``/``family``: the comparison's (``holm`` names the adjustment)."""
    names = {"ttest": "paired t-test", "randomization": "paired randomisation test"}
    marks = [t for t in tests if t in MARKERS]
    adj = f" (Holm-adjusted over the {family} tests of each comparison)" if correction == "holm" else ""
    out = [f"{MARKERS[t]} p < {level:g} vs {name_a}, {names[t]}{adj}" for t in marks]
    if marks:
        out.append(
            f"{LOSS} before a marker: significantly worse than {name_a}; a marker alone: significantly better"
        )
    return out


def metrics_of_results(results: Mapping[str, Any]) -> dict[str, Any]:
    """The metrics JSON inside a saved ``results.json``: the pipeline's ``{"metrics": {...}, ...}`` or the
    scorer's top-level ``{"R@2kt": {...}, ...}`` (extra keys such as ``compare`` dropped)."""
    block = results.get("metrics", results)
    return {m: v for m, v in block.items() if isinstance(v, Mapping) and "macro" in v}
