"""Tiny float64 Linear layers with random Kronecker curvatures, and a dense oracle."""

from __future__ import annotations

import torch
from torch import nn

from llm_surgeon.curvature import KroneckerCurvature
from llm_surgeon.model import ModuleState, PrunableModule
from llm_surgeon.pruning import Scope, Solvers
from llm_surgeon.solver import Damping

F64 = torch.float64


def spd(n: int, gen: torch.Generator) -> torch.Tensor:
    x = torch.randn(n, n + 3, generator=gen, dtype=F64)
    return x @ x.T / n + 0.1 * torch.eye(n, dtype=F64)


def make_layer(d_out: int, d_w: int, bias: bool, seed: int = 0) -> tuple[ModuleState, KroneckerCurvature]:
    """A float64 Linear ``(d_out, d_w)`` and an undamped Kronecker curvature over ``[W | b]``."""
    gen = torch.Generator().manual_seed(seed)
    linear = nn.Linear(d_w, d_out, bias=bias).double()
    with torch.no_grad():
        linear.weight.copy_(torch.randn(d_out, d_w, generator=gen, dtype=F64))
        if bias:
            linear.bias.copy_(torch.randn(d_out, generator=gen, dtype=F64))
    d_in = d_w + int(bias)
    curvature = KroneckerCurvature(((spd(d_out, gen), spd(d_in, gen)),), d_out, d_in)
    return ModuleState.dense(PrunableModule("layers.0.fc", linear, 0, "up")), curvature


NO_DAMPING = Damping(g=0.0, a=0.0)


def on(state: ModuleState, curvature: KroneckerCurvature, damping: Damping = NO_DAMPING) -> tuple[Scope, Solvers]:
    """The scope of one module and the shot's solvers over its curvature (undamped)."""
    return Scope((state,)), Solvers({state.pm.name: curvature}, damping)


def live_oracle(state: ModuleState, curvature: KroneckerCurvature, theta: torch.Tensor,
                removed: torch.Tensor) -> tuple[torch.Tensor, float]:
    """KKT optimum on the live sub-matrix (rows/cols alive in ``state.mask``, bias kept).

    Args:
        theta: full ``[W | b]`` before removal.
        removed: ``(d_out, d_in)`` bool, the newly removed weights (full layout).

    Returns:
        The full new ``theta`` (dead rows/columns untouched) and the cost.
    """
    d_w = state.mask.shape[1]
    rows = state.mask.any(1).nonzero().flatten()
    cols = state.mask.any(0).nonzero().flatten()
    if state.pm.has_bias:
        cols = torch.cat([cols, torch.tensor([d_w])])
    f = curvature.restrict(rows, cols).to_dense()
    sub = theta[rows][:, cols].flatten()
    k = removed[rows][:, cols].flatten()
    d = torch.zeros_like(sub)
    d[k] = -sub[k]
    free = ~k
    d[free] = -torch.linalg.solve(f[free][:, free], f[free][:, k] @ d[k])
    out = theta.clone()
    out[rows[:, None], cols[None, :]] = (sub + d).reshape(len(rows), len(cols))
    return out, 0.5 * float(d @ f @ d)


def close(a, b, rel: float = 1e-6) -> bool:
    a, b = torch.as_tensor(a, dtype=F64), torch.as_tensor(b, dtype=F64)
    scale = max(float(a.abs().max()), float(b.abs().max()), 1e-12)
    return float((a - b).abs().max()) <= rel * scale
