"""Figure: the token-level Fisher of one tiny-model layer beside its Kronecker approximations.

Panels: the exact ``F = 1/N sum_n (g_n g_n^T) ⊗ (a_n a_n^T)``, classic K-FAC, and
nearest-K-FAC of ranks 1, 2, 3, each titled with its RMSE to ``F`` (and relative
Frobenius error). Drawn with matplotlib's Agg canvas (no display, no pyplot state).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from llm_surgeon.curvature.passes import PassOptions, TokenObserver, run_pass
from llm_surgeon.curvature.tokens import ModuleTokens


class _TokenRows(TokenObserver):
    """Collects the rows ``vec(g_n a_n^T)`` of one module (tiny layers only)."""

    def __init__(self) -> None:
        self.rows: list[Tensor] = []

    def backward(self, tokens: ModuleTokens) -> None:
        g, a = tokens.g, tokens.a
        self.rows.append((g[:, :, None] * a[:, None, :]).flatten(1))


def exact_fisher(model, pm, batches: Sequence[Tensor]) -> Tensor:
    """Dense token-level empirical Fisher ``(d_out*d_in, d_out*d_in)`` of ``pm`` in float64."""
    observer = _TokenRows()
    run_pass(model, [pm], batches, observer, gradients=True,
             options=PassOptions(dtype=torch.float64), progress=False)
    j = torch.cat(observer.rows)
    return j.T @ j / j.shape[0]


def figure_data(family: str = "llama", module: str = "model.layers.0.self_attn.v_proj", *,
                ranks: Sequence[int] = (1, 2, 3), iterations: int = 30, seed: int = 0,
                n_windows: int = 4, seqlen: int = 16) -> dict[str, Any]:
    """The matrices and errors of the figure, on a tiny random model.

    Returns:
        ``{"module", "shape", "panels": [(title, matrix), ...], "errors": {label:
        {"rmse", "relative_frobenius"}}}`` with ``matrix: (d_out*d_in, d_out*d_in)``.
    """
    from llm_surgeon.model.adapters import adapter_for
    from llm_surgeon.model.tiny import random_tokens, tiny_model
    from llm_surgeon.registry.registry import Kind, get_registry

    model = tiny_model(family, seed=seed, dtype=torch.float64)
    pm = next(p for p in adapter_for(model).prunable_modules(model) if p.name == module)
    batches = list(random_tokens(model, n_windows, seqlen, seed=seed).split(2))
    fisher = exact_fisher(model, pm, batches)
    registry = get_registry()

    def estimate(name: str, **options: Any) -> Tensor:
        record = registry.get(Kind.CURVATURE, name)
        estimator = record.create(record.make_config(dtype="float64", **options))
        return estimator.estimate(model, [pm], batches, progress=False).curvatures[pm.name].to_dense()

    panels = [("Fisher", fisher), ("K-FAC", estimate("kfac"))]
    panels += [(f"nearest K-FAC R={r}", estimate("nearest-kfac", rank=r, iterations=iterations)) for r in ranks]
    errors = {
        title: {
            "rmse": float((m - fisher).pow(2).mean().sqrt()),
            "relative_frobenius": float((m - fisher).norm() / fisher.norm()),
        }
        for title, m in panels[1:]
    }
    return {"module": pm.name, "shape": (pm.shape[0], pm.shape[1] + pm.has_bias),
            "panels": panels, "errors": errors}


def save_figure(path: str | Path, **kwargs: Any) -> dict[str, Any]:
    """Draw :func:`figure_data` to ``path`` (PNG, PDF or SVG by suffix); returns its errors."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    data = figure_data(**kwargs)
    panels = data["panels"]
    limit = float(panels[0][1].abs().max())
    fig = Figure(figsize=(3.0 * len(panels), 3.4), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels))
    for ax, (title, matrix) in zip(axes, panels, strict=True):
        image = ax.imshow(matrix.numpy(), cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
        err = data["errors"].get(title)
        ax.set_title(title if err is None else f"{title}\nRMSE {err['rmse']:.2e} "
                     f"(rel. {err['relative_frobenius']:.3f})", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    d_out, d_in = data["shape"]
    fig.suptitle(f"{data['module']} ({d_out}x{d_in}): token-level Fisher and Kronecker approximations",
                 fontsize=10)
    fig.colorbar(image, ax=list(axes), shrink=0.8)
    fig.savefig(str(path), dpi=120)
    return {"module": data["module"], "shape": data["shape"], "errors": data["errors"]}
