"""Tables in the paper's layout: one row per (metric, system), languages as columns (ar bn fi ja ko ru te), Avg
last, optional significance markers; plain text for terminals and logs, Markdown for READMEs and reports.

Tables are built from the metrics JSON (``EvalResult.to_json()``, also what ``results.json`` holds), so any saved
result can be tabulated again without re-scoring.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from xqg.evaluation.result import lang_order
from xqg.evaluation.significance import MARKERS

AVG = "Avg"
FORMATS = ("text", "markdown")


def _metrics_of(systems: Mapping[str, Mapping[str, Any]]) -> list[str]:
    seen: dict[str, None] = {}
    for res in systems.values():
        for m, block in res.items():
            if isinstance(block, Mapping) and "macro" in block:
                seen.setdefault(m, None)
    return sorted(seen, key=lambda m: (int(m[2:-2]) if m[2:-2].isdigit() else 1 << 30, m))


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
    row with the number of scored questions per language (total under Avg), taken from the first system.
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
            rows.append(["", "n", *[str(cnt.get(lang, "-")) for lang in langs], str(sum(cnt.values()))])
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


def significance_footnotes(level: float, name_a: str, tests: Sequence[str]) -> list[str]:
    """The legend for the markers :class:`xqg.evaluation.significance.Comparison` puts on the second system
    (``level``: the significance level the markers use)."""
    names = {"ttest": "paired t-test", "randomization": "paired randomisation test"}
    return [f"{MARKERS[t]} p < {level:g} vs {name_a}, {names[t]}" for t in tests if t in MARKERS]


def metrics_of_results(results: Mapping[str, Any]) -> dict[str, Any]:
    """The metrics JSON inside a saved ``results.json``: the pipeline's ``{"metrics": {...}, ...}`` or the
    scorer's top-level ``{"R@2kt": {...}, ...}`` (extra keys such as ``compare`` dropped)."""
    block = results.get("metrics", results)
    return {m: v for m, v in block.items() if isinstance(v, Mapping) and "macro" in v}
