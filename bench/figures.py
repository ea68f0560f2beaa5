"""Figures of benchmark records (matplotlib, Agg; no global pyplot state).

* :func:`ppl_vs_size`: test perplexity against target size, one line per method and
  one panel per structure (the paper's "interpolate model sizes" figure).
* :func:`ppl_vs_real_size`: test perplexity against the real (compact-export) size,
  one line per method and structure, for records that have one.
* :func:`sparsity`: remaining weights per layer depth and per module role for the
  ``surgeon`` runs (the paper's sparsity analysis).
* :func:`ppl_vs_real_size`: test perplexity against the real (compact-export) size.
* :func:`ppl_per_shot`: perplexity after every shot, for runs evaluated each shot.

Each function takes successful records and a path, writes a PNG and returns the
path, or returns ``None`` without writing when there is nothing to draw.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llm_surgeon.analysis.comparison_figures import ppl_per_shot_comparison
from llm_surgeon.analysis.plotting import log_axis, new_figure, save_png
from llm_surgeon.analysis.run_figures import draw_kept_per_layer, draw_kept_per_role
from llm_surgeon.analysis.sparsity import ROLES, kept_by_layer_and_role
from llm_surgeon.analysis.sparsity import ppl_per_shot as shot_curve

__all__ = ["ROLES", "label", "ppl_per_shot", "ppl_vs_real_size", "ppl_vs_size",
           "remaining_by_layer_and_role", "shot_curve", "sparsity"]

_STRUCTURE_ORDER = ("row-col", "dims", "element", "2:4")
#: Fraction remaining per role and layer (the analysis layer's summary, by its bench name).
remaining_by_layer_and_role = kept_by_layer_and_role


def options_text(record: dict[str, Any], skip: tuple[str, ...] = ()) -> str:
    """A run's structure options as `` (key value)`` pairs, e.g. `` (cost readers)``."""
    given = (record.get("config") or {}).get("structure_options") or {}
    return "".join(f" ({k} {v})" for k, v in sorted(given.items()) if k not in skip)


def label(record: dict[str, Any], *, options: bool = True) -> str:
    """Legend label of a run: its method, ``+LoRA`` when LoRA was on and, with ``options``,
    its structure options (``surgeon (cost readers)``) except ``size``, which the size axes
    already show."""
    name = record["method"] + ("+LoRA" if record.get("lora") else "")
    return name + (options_text(record, skip=("size",)) if options else "")


def _structures(records: Sequence[dict[str, Any]]) -> list[str]:
    found = {r["structure"] for r in records}
    known = [s for s in _STRUCTURE_ORDER if s in found]
    return known + sorted(found - set(known))


def _ok(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r.get("status") == "ok"]


#: Perplexity lines entirely above this multiple of the dense one are left off the plot.
OFF_SCALE = 100.0


def _dense(records: Sequence[dict[str, Any]]) -> float | None:
    return next((r["ppl_before"] for r in records if r.get("ppl_before") is not None), None)


def _draw_ppl_lines(ax: Any, lines: dict[str, list[tuple[float, float]]], dense: float | None,
                    xlabel: str) -> None:
    """One line per name through its ``(size, ppl)`` points and the dense point at size 1.

    A line whose every point is above :data:`OFF_SCALE` times the dense perplexity is
    named in the legend but not drawn, so that it does not flatten the others.
    """
    values: list[float] = []
    for name in sorted(lines):
        if dense is not None and min(y for _, y in lines[name]) > OFF_SCALE * dense:
            ax.plot([], [], marker="o", linestyle="none", label=f"{name}: above {OFF_SCALE:g}× dense, not drawn")
            continue
        points = sorted(lines[name]) + ([(1.0, dense)] if dense is not None else [])
        xs, ys = zip(*points, strict=True)
        ax.plot(xs, ys, marker="o", label=name)
        values.extend(ys)
    if dense is not None:
        ax.axhline(dense, color="grey", linestyle="--", linewidth=1, label="dense")
    log_axis(ax, values)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test perplexity")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")


def ppl_vs_size(records: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> Path | None:
    """Perplexity after pruning against target size, per method, one panel per structure.

    The dense model's perplexity is drawn as a dashed line and as the point at size 1.
    """
    records = [r for r in _ok(records) if r.get("ppl_after") is not None]
    if not records:
        return None
    structures = _structures(records)
    fig = new_figure(4.2 * len(structures), 3.6)
    axes = fig.subplots(1, len(structures), squeeze=False)[0]
    for ax, structure in zip(axes, structures, strict=True):
        by_method: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for r in records:
            if r["structure"] == structure:
                by_method[label(r)].append((r["target_size"], r["ppl_after"]))
        _draw_ppl_lines(ax, by_method, _dense(records), "target size (fraction of weights kept)")
        ax.set_title(structure)
    if title:
        fig.suptitle(title)
    return save_png(fig, path)


def ppl_vs_real_size(records: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> Path | None:
    """Perplexity against the real (compact-export) size, one line per method and structure.

    Only records with a ``real_size`` are drawn; ``None`` when there are none.
    """
    records = [r for r in _ok(records) if r.get("ppl_after") is not None and r.get("real_size") is not None]
    if not records:
        return None
    fig = new_figure(5.5, 3.8)
    ax = fig.subplots()
    lines: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for r in records:
        lines[f"{label(r)} {r['structure']}"].append((float(r["real_size"]), float(r["ppl_after"])))
    _draw_ppl_lines(ax, lines, _dense(records), "real size (fraction of prunable weights a compact export stores)")
    if title:
        ax.set_title(title, fontsize="medium")
    return save_png(fig, path)


def sparsity(records: Sequence[dict[str, Any]], path: str | Path, method: str = "surgeon",
             title: str = "") -> Path | None:
    """Remaining weights per layer (one line per role) and per role, for ``method``'s runs."""
    runs = [r for r in _ok(records) if r["method"] == method and r.get("modules")]
    if not runs:
        return None
    fig = new_figure(10.0, 2.8 * len(runs))
    axes = fig.subplots(len(runs), 2, squeeze=False, width_ratios=(2.2, 1))
    for (ax_layer, ax_role), r in zip(axes, runs, strict=True):
        draw_kept_per_layer(ax_layer, r)
        draw_kept_per_role(ax_role, r)
    if title:
        fig.suptitle(title)
    return save_png(fig, path)


def ppl_per_shot(records: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> Path | None:
    """Perplexity after every shot, one line per successful run that recorded it."""
    return ppl_per_shot_comparison(_ok(records), path, title=title)
