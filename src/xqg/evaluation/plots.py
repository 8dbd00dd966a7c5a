"""Paper-style sweep plots (PNG + PDF): R@kt against alpha and against n, one line per language plus the macro
average; the alpha x n heatmap of the macro average; and the baseline-vs-+xQG table (rendered by :func:`xqg.evaluation.tables.paper_table`, not re-implemented here).

Input: trial records (``xqg.tasks.sweep.write_trial_record``): ``{"params": {"alpha", "n", ...}, "metrics":
{"R@2kt": {"ar": .., ..., "macro": .., "count": {..}}, ...}, "markers": {...}, "baseline": {...}}``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from xqg.evaluation.result import lang_order
from xqg.evaluation.significance import LOSS
from xqg.evaluation.tables import paper_table

MACRO = "macro"


def languages(records: Sequence[Mapping[str, Any]], metric: str) -> list[str]:
    langs: set[str] = set()
    for r in records:
        langs.update(k for k in r["metrics"].get(metric, {}) if k not in (MACRO, "count"))
    return lang_order(langs)


def _is_baseline(params: Mapping[str, Any]) -> bool:
    return not params.get("enabled", True) or float(params.get("alpha") or 0.0) == 0.0


def _matches(params: Mapping[str, Any], fixed: Mapping[str, Any]) -> bool:
    for k, v in fixed.items():
        if k == "n" and _is_baseline(params):
            continue  # alpha = 0 does not depend on n: it is the baseline point of every n
        pv = params.get(k)
        if isinstance(v, float) or isinstance(pv, float):
            if pv is None or abs(float(pv) - float(v)) > 1e-12:
                return False
        elif pv != v:
            return False
    return True


def curve(
    records: Sequence[Mapping[str, Any]], param: str, metric: str, fixed: Mapping[str, Any] | None = None
) -> dict[str, list[tuple[float, float]]]:
    """``{lang or 'macro': [(x, R@kt), ...]}`` sorted by x, over the records matching ``fixed``; repeated x
    (the same setting run twice) are averaged. With ``fixed=None`` and several values of the other
    parameters at one x, each x keeps its best-macro record (e.g. "best alpha for each n"). Against alpha, the
    alpha = 0 point is an alpha = 0 trial or, without one, the ``baseline`` the trials carry."""
    chosen: dict[float, list[Mapping[str, Any]]] = {}
    for r in records:
        if metric not in r["metrics"]:
            continue
        params = r["params"]
        if fixed is not None and not _matches(params, fixed):
            continue
        x = 0.0 if param == "alpha" and _is_baseline(params) else params.get(param)
        if x is None:
            continue
        chosen.setdefault(float(x), []).append(r)
    if param == "alpha" and 0.0 not in chosen:
        # no alpha = 0 trial (a grid without the baseline point): the baseline the matching trials scored on
        # the same questions for their significance tests is that point
        base = [
            {"params": {"alpha": 0.0}, "metrics": r["baseline"]}
            for group in chosen.values()
            for r in group
            if isinstance(r.get("baseline"), Mapping) and metric in r["baseline"]
        ]
        if base:
            chosen[0.0] = base[:1]
    out: dict[str, list[tuple[float, float]]] = {}
    for x in sorted(chosen):
        group = chosen[x]
        if fixed is None:
            group = [max(group, key=lambda r: float(r["metrics"][metric][MACRO]))]
        for key in [*languages(group, metric), MACRO]:
            vals = [float(r["metrics"][metric][key]) for r in group if key in r["metrics"][metric]]
            if vals:
                out.setdefault(key, []).append((x, sum(vals) / len(vals)))
    return out


def plot_curve(
    lines: Mapping[str, Sequence[tuple[float, float]]],
    out_path: str | Path,
    *,
    xlabel: str,
    ylabel: str,
    title: str = "",
    integer_x: bool = False,
    labels: Mapping[float, str] | None = None,
    baseline: float | None = None,
) -> Path:
    """One line per language, the macro average thick and black, the legend outside the axes (it never hides
    a line), saved as PNG and, beside it, PDF (same stem). ``labels``: text written at the macro point of each
    x (e.g. the alpha each point of a "best alpha for each n" curve used); ``baseline``: the baseline's macro
    value as a dashed horizontal line. Drawn in matplotlib's default style inside a style context, so a global
    style another library set (Optuna's ggplot) neither reaches these figures nor is changed by them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with plt.style.context("default"):
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for key, pts in lines.items():
            xs, ys = zip(*pts, strict=True) if pts else ((), ())
            if key == MACRO:
                ax.plot(xs, ys, "k-o", linewidth=2.5, label="macro", zorder=3)
                for x, y in pts:
                    if labels and x in labels:
                        ax.annotate(
                            labels[x],
                            (x, y),
                            textcoords="offset points",
                            xytext=(0, 7),
                            ha="center",
                            fontsize=8,
                        )
            else:
                ax.plot(xs, ys, "-o", linewidth=1.2, markersize=3.5, label=key)
        if baseline is not None:
            ax.axhline(
                baseline, color="0.4", linestyle="--", linewidth=1.2, label="baseline (macro)", zorder=2
            )
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if title:
            ax.set_title(title)
        if integer_x:
            ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize=8, frameon=False)
        fig.savefig(out, dpi=120, bbox_inches="tight")
        fig.savefig(out.with_suffix(".pdf"), bbox_inches="tight")
        plt.close(fig)
    return out


def _best_params(records: Sequence[Mapping[str, Any]], metric: str) -> dict[str, Any]:
    return dict(
        max(records, key=lambda r: float(r["metrics"].get(metric, {}).get(MACRO, float("-inf"))))["params"]
    )


def best_alpha_labels(records: Sequence[Mapping[str, Any]], metric: str) -> dict[float, str]:
    """``{n: "alpha=0.05"}``: the alpha of the best-macro record at each n (the points of the "best alpha for
    each n" curve come from different alphas; the plot says which)."""
    best: dict[float, Mapping[str, Any]] = {}
    for r in records:
        n = r["params"].get("n")
        if metric not in r["metrics"] or n is None:
            continue
        if n not in best or float(r["metrics"][metric][MACRO]) > float(best[n]["metrics"][metric][MACRO]):
            best[float(n)] = r
    return {
        n: f"alpha={0.0 if _is_baseline(r['params']) else float(r['params']['alpha']):g}"
        for n, r in best.items()
    }


def baseline_macro(records: Sequence[Mapping[str, Any]], metric: str) -> float | None:
    """The baseline's macro value: an alpha = 0 trial's, else the ``baseline`` a trial carries; None if none."""
    for r in records:
        if _is_baseline(r["params"]) and metric in r["metrics"]:
            return float(r["metrics"][metric][MACRO])
    for r in records:
        block = (r.get("baseline") or {}).get(metric)
        if isinstance(block, Mapping) and MACRO in block:
            return float(block[MACRO])
    return None


def paper_plots(
    records: Sequence[Mapping[str, Any]],
    out_dir: str | Path,
    *,
    metrics: Sequence[str] = ("R@2kt", "R@5kt"),
    best: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """``<metric>_vs_alpha.png`` (at the best n) and ``<metric>_vs_n.png`` (at the best alpha when that alpha
    was run with 2 or more n, as in a grid; otherwise the best alpha for each n, each point labelled with its
    alpha) per metric, each with a ``.pdf`` twin; the keys name the PNGs."""
    out = Path(out_dir)
    written: dict[str, str] = {}
    for metric in metrics:
        if not any(metric in r["metrics"] for r in records):
            continue
        b = dict(best) if best else _best_params(records, metric)
        tag = metric.replace("@", "").lower()
        n_best = b.get("augmentation.n", b.get("n"))
        a_best = b.get("augmentation.alpha", b.get("alpha"))
        lines = curve(records, "alpha", metric, {"n": n_best} if n_best is not None else None)
        if lines.get(MACRO) and len(lines[MACRO]) >= 1:
            title = f"{metric} vs alpha" + (f" (n = {n_best})" if n_best is not None else "")
            written[f"{tag}_vs_alpha"] = str(
                plot_curve(lines, out / f"{tag}_vs_alpha.png", xlabel="alpha", ylabel=metric, title=title)
            )
        lines = curve(records, "n", metric, {"alpha": float(a_best)} if a_best is not None else None)
        title = f"{metric} vs n" + (f" (alpha = {float(a_best):g})" if a_best is not None else "")
        labels = None
        if len(lines.get(MACRO, [])) < 2:
            lines = curve(records, "n", metric, None)
            title = f"{metric} vs n (best alpha for each n)"
            labels = best_alpha_labels(records, metric)
        if lines.get(MACRO):
            written[f"{tag}_vs_n"] = str(
                plot_curve(
                    lines,
                    out / f"{tag}_vs_n.png",
                    xlabel="n (queries per language)",
                    ylabel=metric,
                    title=title,
                    integer_x=True,
                    labels=labels,
                    baseline=baseline_macro(records, metric),
                )
            )
        heatmap = plot_heatmap(records, out / f"{tag}_alpha_n.png", metric)
        if heatmap is not None:
            written[f"{tag}_alpha_n"] = str(heatmap)
    return written


HEATMAP_MAX_ALPHAS = 10  # more distinct alphas (a TPE study) are binned into this many columns


def heatmap_grid(
    records: Sequence[Mapping[str, Any]], metric: str
) -> tuple[list[str], list[int], list[list[float | None]]]:
    """``(alpha labels, n values, cells)`` of the xQG records (alpha > 0): ``cells[i][j]`` is the best macro
    value at ``ns[i]`` and alpha column ``j`` (None where nothing ran). Up to :data:`HEATMAP_MAX_ALPHAS`
    distinct alphas are columns of their own; more are binned into that many equal-width ranges."""
    points = [
        (float(r["params"]["alpha"]), int(r["params"]["n"]), float(r["metrics"][metric][MACRO]))
        for r in records
        if metric in r["metrics"] and not _is_baseline(r["params"]) and r["params"].get("n") is not None
    ]
    if not points:
        return [], [], []
    alphas = sorted({a for a, _, _ in points})
    if len(alphas) <= HEATMAP_MAX_ALPHAS:
        labels = [f"{a:g}" for a in alphas]
        column = {a: i for i, a in enumerate(alphas)}

        def col(a: float) -> int:
            return column[a]
    else:
        lo, hi = alphas[0], alphas[-1]
        width = (hi - lo) / HEATMAP_MAX_ALPHAS
        labels = [f"{lo + i * width:.3g}-{lo + (i + 1) * width:.3g}" for i in range(HEATMAP_MAX_ALPHAS)]

        def col(a: float) -> int:
            return min(int((a - lo) / width), HEATMAP_MAX_ALPHAS - 1)

    ns = sorted({n for _, n, _ in points})
    cells: list[list[float | None]] = [[None] * len(labels) for _ in ns]
    for a, n, v in points:
        i, j = ns.index(n), col(a)
        cells[i][j] = v if cells[i][j] is None else max(v, cells[i][j])  # type: ignore[type-var]
    return labels, ns, cells


def plot_heatmap(records: Sequence[Mapping[str, Any]], out_path: str | Path, metric: str) -> Path | None:
    """The alpha x n heatmap of macro ``metric`` (each cell written out; the baseline's value in the title), PNG
    and PDF; None when no xQG record has ``metric``."""
    labels, ns, cells = heatmap_grid(records, metric)
    if not cells:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    grid = np.array([[np.nan if v is None else v for v in row] for row in cells], dtype=float)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with plt.style.context("default"):
        fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(labels) + 2.0), max(2.6, 0.55 * len(ns) + 1.6)))
        image = ax.imshow(np.ma.masked_invalid(grid), cmap="viridis", aspect="auto", origin="lower")
        finite = grid[np.isfinite(grid)]
        middle = (finite.min() + finite.max()) / 2
        for i in range(len(ns)):
            for j in range(len(labels)):
                if np.isfinite(grid[i, j]):
                    color = "black" if grid[i, j] > middle else "white"
                    ax.text(j, i, f"{grid[i, j]:.1f}", ha="center", va="center", fontsize=8, color=color)
        ax.set_xticks(
            range(len(labels)),
            labels,
            rotation=45 if len(labels) > 5 else 0,
            ha="right" if len(labels) > 5 else "center",
        )
        ax.set_yticks(range(len(ns)), [str(n) for n in ns])
        ax.set_xlabel("alpha")
        ax.set_ylabel("n (queries per language)")
        base = baseline_macro(records, metric)
        ax.set_title(f"macro {metric}" + (f" (baseline {base:.1f})" if base is not None else ""))
        fig.colorbar(image, ax=ax, label=f"macro {metric}")
        fig.savefig(out, dpi=120, bbox_inches="tight")
        fig.savefig(out.with_suffix(".pdf"), bbox_inches="tight")
        plt.close(fig)
    return out


def xqg_table(
    baseline: Mapping[str, Any],
    augmented: Mapping[str, Any],
    *,
    markers: Mapping[str, Mapping[str, str]] | Mapping[tuple[str, str], str] | None = None,
    names: tuple[str, str] = ("xDR", "+xQG"),
    fmt: str = "text",
    decimals: int = 2,
    footnotes: Sequence[str] = (),
) -> str:
    """The paper's table, baseline row then +xQG row per metric, significance markers on the +xQG cells.

    ``markers``: ``{metric: {lang or 'macro': '†'}}`` (as in trial records) or ``{(metric, lang): '†'}`` (as
    :meth:`xqg.evaluation.significance.Comparison.marker_map` returns)."""
    flat: dict[tuple[str, str], str] = {}
    for k, v in (markers or {}).items():
        if isinstance(k, tuple):
            flat[k] = str(v)
        else:
            flat.update({(str(k), str(lang)): str(mk) for lang, mk in v.items()})  # type: ignore[union-attr]
    return paper_table(
        {names[0]: baseline, names[1]: augmented},
        markers={names[1]: flat},
        fmt=fmt,
        decimals=decimals,
        footnotes=footnotes,
    )


def _best_and_baseline(
    records: Sequence[Mapping[str, Any]], best: Mapping[str, Any] | None
) -> tuple[Mapping[str, Any], Mapping[str, Any]] | None:
    """The best xQG trial record and the baseline metrics it is compared with (see
    :func:`best_vs_baseline_table`)."""
    if not records:
        return None
    b = {k.removeprefix("augmentation."): v for k, v in (best or {}).items()}
    cands = [r for r in records if b and _matches(r["params"], b) and not _is_baseline(r["params"])]
    if not cands:
        scored = [
            r
            for r in records
            if not _is_baseline(r["params"]) and isinstance(r.get("objective"), int | float)
        ]
        if not scored:
            return None
        cands = [max(scored, key=lambda r: float(r["objective"]))]
    top = cands[0]
    base = top.get("baseline") or next((r["metrics"] for r in records if _is_baseline(r["params"])), None)
    return None if base is None else (top, base)


def best_vs_baseline_table(
    records: Sequence[Mapping[str, Any]], best: Mapping[str, Any] | None, fmt: str = "text"
) -> str | None:
    """Table of the best trial against alpha = 0 (its own ``baseline`` metrics, else an alpha = 0 trial); when
    the study's best is alpha = 0 itself (xQG did not help), the best xQG trial by objective, so the table still
    shows by how much. None when the records hold no baseline or no xQG trial."""
    found = _best_and_baseline(records, best)
    if found is None:
        return None
    top, base = found
    p = top["params"]
    name = f"{top.get('system') or '+xQG'} (alpha={float(p.get('alpha', 0)):g}, n={p.get('n')})"
    notes = []
    if any(mk for per in (top.get("markers") or {}).values() for mk in per.values()):
        notes = [
            "† / ‡: significantly better than alpha = 0 (paired t-test / randomisation test); "
            f"{LOSS}† / {LOSS}‡: significantly worse"
        ]
    return xqg_table(
        base, top["metrics"], markers=top.get("markers"), names=("xDR", name), fmt=fmt, footnotes=notes
    )


def no_gain_sentence(records: Sequence[Mapping[str, Any]], metric: str = "R@2kt") -> str | None:
    """ "No xQG setting beat the baseline ..." when no xQG record's macro ``metric`` is above the baseline's;
    None when one is (or there is nothing to compare)."""
    base = baseline_macro(records, metric)
    scored = [r for r in records if not _is_baseline(r["params"]) and metric in r["metrics"]]
    if base is None or not scored:
        return None
    top = max(scored, key=lambda r: float(r["metrics"][metric][MACRO]))
    value = float(top["metrics"][metric][MACRO])
    if value > base:
        return None
    p = top["params"]
    return (
        f"No xQG setting beat the baseline on macro {metric}: the best of {len(scored)} "
        f"(alpha={float(p.get('alpha', 0)):g}, n={p.get('n')}) reached {value:.2f} against the baseline's {base:.2f}."
    )


def best_vs_baseline_heading(records: Sequence[Mapping[str, Any]], best: Mapping[str, Any] | None) -> str:
    """The sentence above that table: "better than" / "worse than" the baseline when the best setting's macro
    objective metric differs significantly (its markers), "vs" otherwise."""
    found = _best_and_baseline(records, best)
    top = found[0] if found else {}
    metric = str((top.get("objective_names") or ["R@2kt"])[0]).partition("/")[0]
    mark = str((top.get("markers") or {}).get(metric, {}).get(MACRO, ""))
    if mark.startswith(LOSS):
        return f"Best xQG setting, significantly worse than the baseline on macro {metric}"
    if mark:
        return f"Best xQG setting, significantly better than the baseline on macro {metric}"
    return f"Best xQG setting vs the baseline, no significant difference on macro {metric}"
