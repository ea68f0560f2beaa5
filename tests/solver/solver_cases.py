"""Random float64 curvatures and weights for the solver tests (brute force is the oracle)."""

from __future__ import annotations

import torch

from llm_surgeon.curvature import Curvature, DenseCurvature, KroneckerCurvature
from llm_surgeon.solver import CurvatureSolver, Damping, solver_for

F64 = torch.float64
NO_DAMPING = Damping(g=0.0, a=0.0)


def spd(n: int, gen: torch.Generator, *, ridge: float = 0.1) -> torch.Tensor:
    """A random well-conditioned SPD matrix ``(n, n)`` with correlated entries."""
    x = torch.randn(n, n + 3, generator=gen, dtype=F64)
    return x @ x.T / n + ridge * torch.eye(n, dtype=F64)


def symmetric(n: int, gen: torch.Generator, scale: float) -> torch.Tensor:
    """A random symmetric, indefinite matrix ``(n, n)`` of spectral size about ``scale``."""
    x = torch.randn(n, n, generator=gen, dtype=F64)
    return scale * (x + x.T) / (2 * n**0.5)


def kron_curvature(d_out: int, d_in: int, rank: int = 1, seed: int = 0, *,
                   identity_g: bool = False, indefinite: bool = False) -> KroneckerCurvature:
    """``F = sum_r G_r ⊗ A_r`` with random SPD factors (``G = None`` if ``identity_g``).

    With ``indefinite``, terms after the first are symmetric indefinite and small, as the
    later terms of a nearest-Kronecker sum are (``F`` stays positive definite).
    """
    gen = torch.Generator().manual_seed(seed)
    factors = [(None if identity_g else spd(d_out, gen), spd(d_in, gen))]
    for _ in range(rank - 1):
        if indefinite:
            factors.append((symmetric(d_out, gen, 0.3), symmetric(d_in, gen, 0.3)))
        else:
            factors.append((None if identity_g else spd(d_out, gen), spd(d_in, gen)))
    return KroneckerCurvature(tuple(factors), d_out, d_in)


def dense_of(curvature: KroneckerCurvature) -> DenseCurvature:
    """The same (undamped) curvature as an explicit matrix."""
    return DenseCurvature(curvature.to_dense(), curvature.d_out, curvature.d_in)


def solve(curvature: Curvature, damping: Damping = NO_DAMPING) -> CurvatureSolver:
    """The registered solver of ``curvature`` (undamped unless ``damping`` is given)."""
    return solver_for(curvature, damping)


def random_theta(d_out: int, d_in: int, seed: int = 1) -> torch.Tensor:
    """Random weights ``(d_out, d_in)``."""
    return torch.randn(d_out, d_in, generator=torch.Generator().manual_seed(seed), dtype=F64)


def random_mask(d_out: int, d_in: int, p: float, seed: int = 2) -> torch.Tensor:
    """A random bool mask with about ``p`` of the entries set."""
    return torch.rand(d_out, d_in, generator=torch.Generator().manual_seed(seed)) < p


def close(a, b, rel: float = 1e-6) -> bool:
    """Relative closeness of tensors or floats, scaled by the larger magnitude."""
    a, b = torch.as_tensor(a, dtype=F64), torch.as_tensor(b, dtype=F64)
    scale = max(float(a.abs().max()), float(b.abs().max()), 1e-12)
    return float((a - b).abs().max()) <= rel * scale


def constrained_optimum(f: torch.Tensor, theta: torch.Tensor, removed: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Brute-force KKT solution: minimise 1/2 d^T F d subject to (theta + d)_K = 0."""
    t = theta.flatten()
    k = removed.flatten()
    free = ~k
    d = torch.zeros_like(t)
    d[k] = -t[k]
    if bool(free.any()):
        d[free] = -torch.linalg.solve(f[free][:, free], f[free][:, k] @ d[k])
    return (t + d).reshape(theta.shape), 0.5 * float(d @ f @ d)
