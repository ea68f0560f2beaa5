"""The figures of one run, written into its output folder's ``figures/``.

* ``kept-per-layer.png``: fraction of weights kept per layer depth, one line per module
  role and one for all modules;
* ``kept-per-role.png``: fraction kept per module role (q, k, v, o, gate, up, down...);
* ``ppl-per-shot.png``: perplexity after every shot (only when shots were evaluated,
  ``--eval-every-shot``).

``llm-surgeon prune`` calls :func:`write_run_figures` after the run; from Python,
call it with the output folder and the report ``prune`` returned.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llm_surgeon.analysis.plotting import integer_x, log_axis, new_figure, save_png
from llm_surgeon.analysis.sparsity import (
    kept_by_layer_and_role,
    kept_fraction,
    ppl_per_shot,
    role_order,
    run_label,
)

FIGURES_DIR = "figures"


def draw_kept_per_layer(ax: Any, report: dict[str, Any]) -> None:
    """Fraction kept per layer on ``ax``: one line per role (thin), all modules (thick)."""
    curves = kept_by_layer_and_role(report["modules"])
    for role in role_order(k for k in curves if k != "all"):
        layers = sorted(curves[role])
        ax.plot(layers, [curves[role][i] for i in layers], marker=".", linewidth=1, label=role)
    layers = sorted(curves["all"])
    ax.plot(layers, [curves["all"][i] for i in layers], color="black", linewidth=2, label="all")
    ax.set(xlabel="layer", ylabel="fraction kept", ylim=(0, 1.05),
           title=f"{run_label(report)}: kept per layer")
    integer_x(ax)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="x-small", ncol=4)


def draw_kept_per_role(ax: Any, report: dict[str, Any]) -> None:
    """Fraction kept per module role on ``ax``; the dashed line is the whole model's size."""
    per_role = kept_fraction(report["modules"], "role")
    order = role_order(per_role)
    ax.bar(order, [per_role[r] for r in order], color="tab:blue")
    size = report.get("achieved_size") or report.get("target_size")
    if size is not None:
        ax.axhline(float(size), color="black", linestyle="--", linewidth=1, label="model")
        ax.legend(fontsize="small")
    ax.set(ylabel="fraction kept", ylim=(0, 1.05), title="kept per role")


def kept_per_layer(report: dict[str, Any], path: str | Path) -> Path:
    """:func:`draw_kept_per_layer` as a PNG."""
    fig = new_figure(6.4, 3.6)
    draw_kept_per_layer(fig.subplots(), report)
    return save_png(fig, path)


def kept_per_role(report: dict[str, Any], path: str | Path) -> Path:
    """:func:`draw_kept_per_role` as a PNG."""
    fig = new_figure(4.2, 3.2)
    ax = fig.subplots()
    draw_kept_per_role(ax, report)
    ax.set_title(f"{run_label(report)}: kept per role")
    return save_png(fig, path)


def ppl_shots(report: dict[str, Any], path: str | Path) -> Path | None:
    """Perplexity after every shot (shot 0: dense), or ``None`` if shots were not evaluated."""
    points = ppl_per_shot(report)
    if not points:
        return None
    fig = new_figure(4.8, 3.4)
    ax = fig.subplots()
    xs, ys = zip(*points, strict=True)
    ax.plot(xs, ys, marker="o")
    log_axis(ax, ys)
    integer_x(ax)
    ax.set(xlabel="shot (0 = dense)", ylabel="perplexity", title=f"{run_label(report)}: per shot")
    ax.grid(True, alpha=0.3)
    return save_png(fig, path)


def run_figures(folder: str | Path, report: dict[str, Any]) -> list[Path]:
    """Write a run's figures into ``folder``; the files written (none without ``modules``)."""
    folder = Path(folder)
    if not report.get("modules"):
        return []
    paths = [kept_per_layer(report, folder / "kept-per-layer.png"),
             kept_per_role(report, folder / "kept-per-role.png")]
    shots = ppl_shots(report, folder / "ppl-per-shot.png")
    return paths + ([shots] if shots else [])


def write_run_figures(out: str | Path, report: dict[str, Any]) -> list[Path]:
    """Write the run's figures into its output folder's ``figures/``; the files written.

    Args:
        out: the run's output folder.
        report: its report (``report.json`` content); needs ``modules``.
    """
    return run_figures(Path(out) / FIGURES_DIR, report)
