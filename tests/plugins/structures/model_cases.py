"""Tiny float64 models with random biases and random Kronecker curvatures, for ``dims`` tests."""

from __future__ import annotations

import torch
from structure_cases import spd

from llm_surgeon.curvature import KroneckerCurvature
from llm_surgeon.model import ModuleState, adapter_for
from llm_surgeon.pruning import Solvers
from llm_surgeon.solver import Damping
from llm_surgeon.testing import tiny_model

F64 = torch.float64
#: Families with grouped-query attention (llama*), q/k/v biases without an o bias (qwen2),
#: and OPT (biases everywhere, ReLU, no RoPE).
FAMILIES = ["llama", "llama-bias", "qwen2", "opt"]


def model_case(family: str, seed: int = 0, *, bias_std: float = 0.5):
    """A tiny float64 model with random biases, its adapter, module states and couplings."""
    model = tiny_model(family, seed=seed).double()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.copy_(bias_std * torch.randn(p.shape, generator=gen, dtype=F64))
            elif p.dim() == 2 and "proj" in name or name.endswith(("fc1.weight", "fc2.weight")):
                p.copy_(torch.randn(p.shape, generator=gen, dtype=F64) / p.shape[1] ** 0.5)
    adapter = adapter_for(model)
    states = [ModuleState.dense(pm) for pm in adapter.prunable_modules(model)]
    return model, adapter, states, adapter.couplings(model)


def random_solvers(states, seed: int = 0, damping: Damping | None = None) -> tuple[Solvers, dict]:
    """Random undamped Kronecker curvatures of every module (over ``[W | b]``) and their solvers."""
    gen = torch.Generator().manual_seed(seed + 100)
    curvatures = {}
    for s in states:
        d_out, d_w = s.pm.shape
        d_in = d_w + int(s.pm.has_bias)
        curvatures[s.pm.name] = KroneckerCurvature(((spd(d_out, gen), spd(d_in, gen)),), d_out, d_in)
    return Solvers(curvatures, damping or Damping(g=0.0, a=0.0)), curvatures


class LiveOracle:
    """Brute-force OBS costs on a module's live sub-matrix (``F^-1`` formed once)."""

    def __init__(self, state: ModuleState, curvature: KroneckerCurvature):
        d_w = state.mask.shape[1]
        self.rows = state.mask.any(1).nonzero().flatten()
        cols = state.mask.any(0).nonzero().flatten()
        self.cols = torch.cat([cols, torch.tensor([d_w])]) if state.pm.has_bias else cols
        self.finv = torch.linalg.inv(curvature.restrict(self.rows, self.cols).to_dense())
        self.theta = state.theta()[self.rows][:, self.cols].flatten()

    def cost(self, removed: torch.Tensor) -> float:
        """``1/2 (E_K theta)^T (E_K F^-1 E_K^T)^-1 (E_K theta)`` for ``removed: (d_out, d_in)`` bool."""
        k = removed[self.rows][:, self.cols].flatten()
        if not bool(k.any()):
            return 0.0
        return 0.5 * float(self.theta[k] @ torch.linalg.solve(self.finv[k][:, k], self.theta[k]))
