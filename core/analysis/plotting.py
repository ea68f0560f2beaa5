"""Matplotlib helpers shared by every figure: Agg figures (no pyplot state), axes, PNG files."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def new_figure(width: float, height: float) -> Any:
    """A ``matplotlib.figure.Figure`` of ``width`` x ``height`` inches with an Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Any, path: str | Path) -> Path:
    """Write ``fig`` as a PNG (parent folders created, no timestamp metadata)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", metadata={"Software": None})
    return path


def log_axis(ax: Any, values: Sequence[float]) -> None:
    """Log-scale y axis; plain tick labels (``20``, ``50``) when the data spans < 2 decades."""
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    ax.set_yscale("log")
    positive = [v for v in values if v and v > 0]
    if positive and math.log10(max(positive) / min(positive)) < 2:
        formatter = ScalarFormatter()
        formatter.set_scientific(False)
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(formatter)
        ax.yaxis.set_minor_formatter(NullFormatter())


def integer_x(ax: Any) -> None:
    """Integer ticks on the x axis (layers, shots)."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
