"""Figures comparing several runs (reports or bench records) on one model.

* :func:`sparsity_comparison`: fraction kept per layer depth (one line per run) and per
  module role (one bar per run), the paper's "sparsity per layer depth and type" figure;
* :func:`ppl_per_shot_comparison`: perplexity after every shot, one line per run that
  evaluated its shots.

Each returns the PNG written, or ``None`` (writing nothing) when no run has the data.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llm_surgeon.analysis.plotting import integer_x, log_axis, new_figure, save_png
from llm_surgeon.analysis.sparsity import kept_fraction, ppl_per_shot, role_order, run_label


def sparsity_comparison(reports: Sequence[dict[str, Any]], path: str | Path, *,
                        labels: Sequence[str] | None = None, title: str = "") -> Path | None:
    """Kept per layer (left, one line per run) and per role (right, grouped bars).

    Args:
        reports: runs with a ``modules`` table.
        path: the PNG file.
        labels: legend label per run (default: method, structure, size).
        title: the figure's title.
    """
    pairs = [(r, labels[i] if labels else run_label(r)) for i, r in enumerate(reports)
             if r.get("modules")]
    if not pairs:
        return None
    fig = new_figure(11.0, 3.8)
    ax_layer, ax_role = fig.subplots(1, 2, width_ratios=(1.6, 1))
    roles = role_order({m["role"] for r, _ in pairs for m in r["modules"]})
    width = 0.8 / len(pairs)
    for i, (report, name) in enumerate(pairs):
        per_layer = kept_fraction(report["modules"], "layer")
        layers = sorted(per_layer)
        ax_layer.plot(layers, [per_layer[k] for k in layers], marker=".", label=name)
        per_role = kept_fraction(report["modules"], "role")
        xs = [j + (i - (len(pairs) - 1) / 2) * width for j in range(len(roles))]
        ax_role.bar(xs, [per_role.get(role, 0.0) for role in roles], width=width, label=name)
    ax_layer.set(xlabel="layer", ylabel="fraction kept", ylim=(0, 1.05), title="kept per layer depth")
    integer_x(ax_layer)
    ax_layer.grid(True, alpha=0.3)
    ax_layer.legend(fontsize="x-small")
    ax_role.set_xticks(range(len(roles)), roles)
    ax_role.set(ylabel="fraction kept", ylim=(0, 1.05), title="kept per module role")
    ax_role.grid(True, axis="y", alpha=0.3)
    if title:
        fig.suptitle(title)
    return save_png(fig, path)


def ppl_per_shot_comparison(reports: Sequence[dict[str, Any]], path: str | Path, *,
                            labels: Sequence[str] | None = None, title: str = "") -> Path | None:
    """Perplexity after every shot (shot 0: dense), one line per run that recorded it."""
    curves = [(labels[i] if labels else run_label(r), ppl_per_shot(r)) for i, r in enumerate(reports)]
    curves = [(name, points) for name, points in curves if points]
    if not curves:
        return None
    fig = new_figure(5.5, 3.6)
    ax = fig.subplots()
    for name, points in curves:
        xs, ys = zip(*points, strict=True)
        ax.plot(xs, ys, marker="o", label=name)
    log_axis(ax, [y for _, points in curves for _, y in points])
    integer_x(ax)
    ax.set(xlabel="shot (0 = dense)", ylabel="perplexity")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    return save_png(fig, path)
