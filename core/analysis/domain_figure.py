"""Figure of task-specific compression: cross-perplexity and mask-equivalence matrices.

One row of two heat maps per method / structure / size of ``domains.json``
(:mod:`llm_surgeon.run.cross_domain`). Left: perplexity calibrated on the row's domain
and evaluated on the column's, coloured by its ratio to the dense model's perplexity on
that domain (log scale), each cell labelled with the perplexity. Right: the fraction of
identical keep/remove decisions between the masks of two calibration domains.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from llm_surgeon.analysis.plotting import new_figure, save_png


def _ratios(ppl: list[list[float | None]], dense: list[float | None]) -> np.ndarray:
    out = np.full((len(ppl), len(dense)), np.nan)
    for i, row in enumerate(ppl):
        for j, value in enumerate(row):
            if value is not None and dense[j] and math.isfinite(value):
                out[i, j] = value / dense[j]
    return out


def _annotate(ax: Any, values: list[list[float | None]], spec: str) -> None:
    for i, row in enumerate(values):
        for j, value in enumerate(row):
            text = "–" if value is None else format(value, spec)
            ax.text(j, i, text, ha="center", va="center", fontsize=9,
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "alpha": 0.7, "lw": 0})


def _axes_labels(ax: Any, rows: list[str], cols: list[str], xlabel: str) -> None:
    ax.set_xticks(range(len(cols)), cols, rotation=20)
    ax.set_yticks(range(len(rows)), rows)
    ax.set(xlabel=xlabel, ylabel="calibrated on")


def save_domain_figure(domains: dict[str, Any], path: str | Path) -> Path | None:
    """Draw the matrices of ``domains`` (``domains.json`` content) to a PNG; ``None`` if empty."""
    from matplotlib.colors import LogNorm
    from matplotlib.ticker import FormatStrFormatter

    matrices = domains["matrices"]
    if not matrices:
        return None
    calib, evals = domains["calib_data"], domains["eval_data"]
    dense = [domains["dense_ppl"].get(n) for n in evals]
    fig = new_figure(4.2 + 1.1 * (len(evals) + len(calib)), 0.6 + 0.9 * max(len(calib), 2) * len(matrices))
    axes = fig.subplots(len(matrices), 2, squeeze=False)
    for (ax_ppl, ax_eq), m in zip(axes, matrices, strict=True):
        ratios = _ratios(m["ppl"], dense)
        finite = ratios[np.isfinite(ratios)]
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (1.0, 2.0)
        image = ax_ppl.imshow(ratios, cmap="Reds", norm=LogNorm(vmin=min(low, 1.0), vmax=max(high, 1.01)))
        bar = fig.colorbar(image, ax=ax_ppl, label="ppl / dense ppl", shrink=0.85)
        bar.ax.yaxis.set_major_formatter(FormatStrFormatter("%.3g"))
        bar.ax.yaxis.set_minor_formatter(FormatStrFormatter("%.3g"))
        _annotate(ax_ppl, m["ppl"], ".1f")
        _axes_labels(ax_ppl, calib, evals, "evaluated on")
        ax_ppl.set_title(f"{m['method']} {m['structure']} {m['target_size']:g}: perplexity", fontsize=10)
        eq = np.array([[np.nan if v is None else v for v in row] for row in m["mask_equivalence"]])
        low = float(np.nanmin(eq)) if np.isfinite(eq).any() else 0.0
        image = ax_eq.imshow(eq, cmap="Blues", vmin=min(low, 0.999), vmax=1.0)
        fig.colorbar(image, ax=ax_eq, label="identical decisions", shrink=0.85)
        _annotate(ax_eq, m["mask_equivalence"], ".3f")
        _axes_labels(ax_eq, calib, calib, "calibrated on")
        ax_eq.set_title("mask equivalence", fontsize=10)
    return save_png(fig, path)
