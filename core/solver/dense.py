"""The generic reference solver: forms ``F`` and ``F^-1`` explicitly.

Only for tiny layers and tests, where it is the oracle for the structured solvers:
every cost and update is the textbook formula on the dense ``(n, n)`` matrices with
``n = d_out * d_in``.
"""

from __future__ import annotations

from functools import cached_property

import torch
from torch import Tensor

from llm_surgeon.curvature.types import DenseCurvature
from llm_surgeon.solver.base import (
    DEFAULT_CHUNK_SIZE,
    MAX_JOINT,
    ChunkSize,
    CurvatureSolver,
    Sweep,
    check_sweep,
    plan_chunks,
)
from llm_surgeon.solver.factor import DampedFactor, damped_cholesky


class DenseSolver(CurvatureSolver):
    """Costs and updates from the dense matrix ``F`` (damped by ``damping * mean(diag F)``).

    Args:
        curvature: the dense curvature, ``matrix: (d_out*d_in, d_out*d_in)``.
        damping: relative damping of ``F``.
    """

    def __init__(self, curvature: DenseCurvature, damping: float = 0.0):
        self.curvature = curvature
        self.damping = damping
        self.d_out = curvature.d_out
        self.d_in = curvature.d_in

    @cached_property
    def _factor(self) -> DampedFactor:
        factor = damped_cholesky(self.curvature.matrix, self.damping, name="dense curvature F")
        self.report_escalations(factor.escalations)
        return factor

    @cached_property
    def finv(self) -> Tensor:
        """``F^-1``, ``(n, n)`` float64."""
        return self._factor.inverse()

    @property
    def device(self) -> torch.device:
        return self.curvature.matrix.device

    def _local(self, theta: Tensor) -> Tensor:
        return self._theta(theta).to(self.device)

    # -- costs -------------------------------------------------------------------
    def element_costs(self, theta: Tensor) -> Tensor:
        t = self._local(theta)
        d = self.finv.diagonal().reshape(self.d_out, self.d_in)
        return (t * t / (2 * d)).to(theta.device)

    def _block_costs(self, blocks: Tensor, vectors: Tensor) -> Tensor:
        """``1/2 v_b^T B_b^-1 v_b`` for a batch of blocks ``(nb, k, k)`` and vectors ``(nb, k)``."""
        sol = torch.linalg.solve(blocks, vectors.unsqueeze(-1)).squeeze(-1)
        return 0.5 * (vectors * sol).sum(dim=-1)

    def row_costs(self, theta: Tensor) -> Tensor:
        t = self._local(theta)
        f4 = self.finv.reshape(self.d_out, self.d_in, self.d_out, self.d_in)
        blocks = f4.diagonal(dim1=0, dim2=2).permute(2, 0, 1)  # (d_out, d_in, d_in)
        return self._block_costs(blocks, t).to(theta.device)

    def col_costs(self, theta: Tensor) -> Tensor:
        t = self._local(theta)
        f4 = self.finv.reshape(self.d_out, self.d_in, self.d_out, self.d_in)
        blocks = f4.diagonal(dim1=1, dim2=3).permute(2, 0, 1)  # (d_in, d_out, d_out)
        return self._block_costs(blocks, t.T).to(theta.device)

    def quadratic(self, delta: Tensor) -> float:
        v = self._local(delta).flatten()
        return 0.5 * float(v @ (self._factor.matrix @ v))

    # -- removal -------------------------------------------------------------------
    def _solve_set(self, t: Tensor, idx: Tensor) -> tuple[Tensor, float]:
        """Remove the flat indices ``idx`` from ``t`` (local, float64) jointly."""
        flat = t.flatten()
        block = self.finv[idx][:, idx]
        alpha = torch.linalg.solve(block, flat[idx])
        new = flat - self.finv[:, idx] @ alpha
        new[idx] = 0.0
        return new.reshape(self.d_out, self.d_in), 0.5 * float(flat[idx] @ alpha)

    def remove(self, theta: Tensor, removed: Tensor) -> tuple[Tensor, float]:
        t = self._local(theta)
        idx = self._mask(removed, self.device).flatten().nonzero().flatten()
        if len(idx) == 0:
            return t.to(theta.device), 0.0
        new, cost = self._solve_set(t, idx)
        return new.to(theta.device), cost

    def remove_elements(
        self,
        theta: Tensor,
        removed: Tensor,
        *,
        chunk_size: ChunkSize = DEFAULT_CHUNK_SIZE,
        update: bool = True,
        sweep: Sweep = None,
    ) -> tuple[Tensor, float]:
        check_sweep(sweep)
        if not update:
            return self.zero(theta, removed)
        t0 = self._local(theta)
        mask = self._mask(removed, self.device)
        if sweep == "gauss-seidel":
            flat, bounds = plan_chunks(mask, chunk_size)
        else:
            flat, bounds = plan_chunks(mask, chunk_size, whole_rows=MAX_JOINT)
        if len(bounds) <= 2:
            return self.remove(theta, removed)
        t, row = t0.clone(), 0
        for start, end in zip(bounds[:-1], bounds[1:], strict=True):
            if sweep == "gauss-seidel":
                t, _ = self._solve_set(t, flat[start:end])
            else:
                row = min(row, int(flat[start]) // self.d_in)  # pieces of a split row own it
                t = self._solve_tail(t, flat[start:end], row * self.d_in)
                row = int(flat[end - 1]) // self.d_in + 1  # rows up to the chunk's last are final
            t.view(-1)[flat[:end]] = 0.0  # earlier removals stay removed
        return t.to(theta.device), self.quadratic(t - t0)

    def _solve_tail(self, t: Tensor, idx: Tensor, start: int) -> Tensor:
        """Remove ``idx`` changing only the weights from flat index ``start`` on (``F`` restricted)."""
        flat = t.flatten()
        f_tail = self._factor.matrix[start:, start:]
        inv = torch.linalg.inv(f_tail)
        local = idx - start
        alpha = torch.linalg.solve(inv[local][:, local], flat[idx])
        new = flat.clone()
        new[start:] -= inv[:, local] @ alpha
        new[idx] = 0.0
        return new.reshape(self.d_out, self.d_in)
