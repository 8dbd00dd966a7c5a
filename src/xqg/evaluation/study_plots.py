"""Figures of the research studies (docs/studies.md): labelled axes, legends, one panel per metric or language.

matplotlib is imported inside each function (Agg backend), as for the sweep plots.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def _pyplot():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _finish(plt: Any, fig: Any, unused: Any, title: str, path: str | Path) -> Path:
    """Hide the grid's unused panels, title the figure, save it to ``path`` and close it."""
    for ax in unused:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def heatmaps(
    panels: Mapping[str, np.ndarray],
    rows: Sequence[str],
    columns: Sequence[str],
    path: str | Path,
    title: str,
    decimals: int = 2,
) -> Path:
    """One annotated heatmap per panel (``rows`` x ``columns``; NaN cells left blank), in a grid."""
    plt = _pyplot()
    n = len(panels)
    ncols = min(2, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(0.62 * len(columns) * ncols + 2.5, 0.45 * len(rows) * nrows + 1.6 * nrows)
    )
    axes = np.atleast_1d(axes).ravel()
    for ax, (name, m) in zip(axes, panels.items(), strict=False):
        m = np.asarray(m, dtype=np.float64)
        im = ax.imshow(np.ma.masked_invalid(m), aspect="auto", cmap="viridis")
        ax.set_xticks(range(len(columns)), labels=list(columns))
        ax.set_yticks(range(len(rows)), labels=list(rows))
        ax.set_xlabel("language")
        ax.set_ylabel("model state")
        ax.set_title(name)
        finite = m[np.isfinite(m)]
        mid = (finite.min() + finite.max()) / 2 if finite.size else 0.0
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                if np.isfinite(m[i, j]):
                    ax.text(
                        j,
                        i,
                        f"{m[i, j]:.{decimals}f}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="black" if m[i, j] > mid else "white",
                    )
        fig.colorbar(im, ax=ax, fraction=0.04)
    return _finish(plt, fig, axes[n:], title, path)


def grouped_bars(
    values: Mapping[str, Mapping[str, Sequence[float]]],
    groups: Sequence[str],
    path: str | Path,
    title: str,
    ylabel: str,
    errors: Mapping[str, Mapping[str, Sequence[tuple[float, float]]]] | None = None,
) -> Path:
    """One panel per key of ``values`` (e.g. a language), one group of bars per ``groups`` entry (e.g. a
    perturbation), one bar per series (e.g. a system); optional asymmetric error bars ``(low, high)``."""
    plt = _pyplot()
    panels = list(values)
    ncols = min(4, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.2 * nrows), squeeze=False, sharey=True)
    flat = axes.ravel()
    for ax, panel in zip(flat, panels, strict=False):
        series = list(values[panel])
        width = 0.8 / max(1, len(series))
        x = np.arange(len(groups))
        for s, name in enumerate(series):
            y = np.asarray(values[panel][name], dtype=np.float64)
            yerr = None
            if errors is not None and name in errors.get(panel, {}):
                lo_hi = np.asarray(errors[panel][name], dtype=np.float64)
                yerr = np.abs(np.stack([y - lo_hi[:, 0], lo_hi[:, 1] - y]))
            ax.bar(x + (s - (len(series) - 1) / 2) * width, y, width, label=name, yerr=yerr, capsize=2)
        ax.set_xticks(x, labels=list(groups), rotation=45, ha="right", fontsize=7)
        ax.set_title(panel)
        ax.set_ylabel(ylabel)
        ax.grid(axis="y", alpha=0.3)
    flat[0].legend(fontsize=7)
    return _finish(plt, fig, flat[len(panels) :], title, path)
