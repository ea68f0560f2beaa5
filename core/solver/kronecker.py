"""Costs and updates for Kronecker-factored curvatures without ever forming ``F``.

With ``theta = [W | b]`` of shape ``(d_out, d_in)`` (row-major) and a single Kronecker
product ``F = G ⊗ A`` (each factor damped as ``G + g mean(diag G) I``, ``A + a mean(diag A) I``;
identity factors stay undamped), ``F^-1 = G^-1 ⊗ A^-1`` and the OBS formulas
``L_K = 1/2 (E_K theta)^T (E_K F^-1 E_K^T)^-1 E_K theta`` and
``dtheta = -F^-1 E_K^T (E_K F^-1 E_K^T)^-1 E_K theta`` have closed forms: removing weight
``(i, j)`` costs ``theta_ij^2 / (2 [G^-1]_ii [A^-1]_jj)``; row ``r`` costs
``theta_r^T A theta_r / (2 [G^-1]_rr)``; column ``c`` costs ``theta_c^T G theta_c / (2 [A^-1]_cc)``.
Removing rows ``R`` updates ``dW = -G^-1 E_R^T (E_R G^-1 E_R^T)^-1 E_R W`` at cost
``1/2 tr(W_R^T (G^-1_RR)^-1 W_R A)``; removing columns ``C`` updates
``dW = -W E_C^T (E_C A^-1 E_C^T)^-1 E_C A^-1`` at cost ``1/2 tr(G W_C (A^-1_CC)^-1 W_C^T)``.
Rows and columns together are exact as rows first, then columns of the remaining rows
under the restricted curvature ``G[keep, keep] ⊗ A`` (the first step leaves a zero
gradient in that subspace, so the two costs add up to the joint one). Element sets use
``E_K F^-1 E_K^T = G^-1[r, r] ∘ A^-1[j, j]`` chunk by chunk
(:mod:`llm_surgeon.solver.elements`). A sum of two Kronecker products is handled in
its joint eigenbasis (:mod:`llm_surgeon.solver.kronecker_rank2`); anything else falls
back to the dense solver on layers of at most :data:`DENSE_FALLBACK_MAX` weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property

import torch
from torch import Tensor

from llm_surgeon.curvature.types import DenseCurvature
from llm_surgeon.solver.base import (
    DEFAULT_CHUNK_SIZE,
    ChunkSize,
    CurvatureSolver,
    Sweep,
    UnsupportedCurvatureError,
    as_mask,
    by_size,
    check_sweep,
)
from llm_surgeon.solver.dense import DenseSolver
from llm_surgeon.solver.elements import remove_elements_rank1
from llm_surgeon.solver.kronecker_factors import KroneckerFactors
from llm_surgeon.solver.sequential import remove_elements_sequential

#: Largest ``d_out * d_in`` for which an unsupported case is solved densely.
DENSE_FALLBACK_MAX = 4096


class KroneckerSolver(CurvatureSolver, KroneckerFactors):
    """Solver for ``F = sum_r G_r ⊗ A_r``: closed forms for rank 1, eigenbasis for rank 2.

    The damped factorisations come from :class:`KroneckerFactors`; this class holds
    the costs and updates built on them.

    Args:
        curvature: the (already restricted) Kronecker curvature, undamped.
        damping: relative damping of ``G`` and ``A`` (of the first term).
    """

    @cached_property
    def dense(self) -> DenseSolver:
        """Dense fallback on the damped ``F`` (small layers only)."""
        n = self.d_out * self.d_in
        if n > DENSE_FALLBACK_MAX:
            raise self._unsupported("this operation")
        f = sum(
            torch.kron(self._matrix(g, self.d_out), self._matrix(a, self.d_in)) for g, a in self._factors
        )
        return DenseSolver(DenseCurvature(f, self.d_out, self.d_in))

    def _unsupported(self, what: str) -> UnsupportedCurvatureError:
        return UnsupportedCurvatureError(
            f"{what} is supported for Kronecker curvatures of rank 1 (F = G ⊗ A; element, row "
            f"and column costs and updates) and rank 2 (element costs and updates, row/column "
            f"costs); this curvature has rank {self.curvature.rank} on a {self.d_out}x{self.d_in} "
            f"layer, above the dense fallback limit of {DENSE_FALLBACK_MAX} weights"
        )

    @property
    def is_identity(self) -> bool:
        """``F = I ⊗ I``: every optimal update is plain zeroing."""
        return self.rank == 1 and all(f is None for f in self.curvature.factors[0])

    def _local(self, theta: Tensor) -> Tensor:
        return self._theta(theta).to(self.device)

    # -- costs -------------------------------------------------------------------------
    def element_costs(self, theta: Tensor) -> Tensor:
        t = self._local(theta)
        if self.rank == 1:
            diag = torch.outer(self.g_inv_diag, self.a_inv_diag)
        elif self.rank == 2:
            diag = self.eigen.inverse_diag()
        else:
            return self.dense.element_costs(theta)
        return (t * t / (2 * diag)).to(theta.device)

    def row_costs(self, theta: Tensor) -> Tensor:
        t = self._local(theta)
        if self.rank == 1:
            costs = ((t @ self.a) * t).sum(dim=1) / (2 * self.g_inv_diag)
        elif self.rank == 2:
            costs = self.eigen.row_costs(t)
        else:
            return self.dense.row_costs(theta)
        return costs.to(theta.device)

    def col_costs(self, theta: Tensor) -> Tensor:
        t = self._local(theta)
        if self.rank == 1:
            costs = ((self.g @ t) * t).sum(dim=0) / (2 * self.a_inv_diag)
        elif self.rank == 2:
            costs = self.eigen.col_costs(t)
        else:
            return self.dense.col_costs(theta)
        return costs.to(theta.device)

    def row_set_costs(self, theta: Tensor, sets: Sequence[Tensor]) -> Tensor:
        """Rank 1: ``1/2 tr(W_R^T (G^-1_RR)^-1 W_R A)`` per set, batched over sets of one size."""
        if self.rank != 1:
            return super().row_set_costs(theta, sets)
        t = self._local(theta)
        ta = t @ self.a
        costs = torch.zeros(len(sets), dtype=torch.float64)
        for positions in by_size(sets).values():
            idx = torch.stack([sets[p] for p in positions]).to(self.device)  # (k, w)
            blocks = self._inverse_blocks(0, idx)  # (k, w, w) = G^-1[R, R]
            coef = torch.linalg.solve(blocks, t[idx])  # (k, w, d_in)
            costs[positions] = 0.5 * (coef * ta[idx]).sum(dim=(1, 2)).cpu()
        return costs

    def col_set_costs(self, theta: Tensor, sets: Sequence[Tensor]) -> Tensor:
        """Rank 1: ``1/2 tr(G W_C (A^-1_CC)^-1 W_C^T)`` per set, batched over sets of one size."""
        if self.rank != 1:
            return super().col_set_costs(theta, sets)
        t = self._local(theta)
        gt = self.g @ t
        costs = torch.zeros(len(sets), dtype=torch.float64)
        for positions in by_size(sets).values():
            idx = torch.stack([sets[p] for p in positions]).to(self.device)  # (k, w)
            blocks = self._inverse_blocks(1, idx)  # (k, w, w) = A^-1[C, C]
            w_c = t[:, idx].permute(1, 2, 0)  # (k, w, d_out) = W_C^T
            coef = torch.linalg.solve(blocks, w_c)  # (A^-1_CC)^-1 W_C^T
            costs[positions] = 0.5 * (coef * gt[:, idx].permute(1, 2, 0)).sum(dim=(1, 2)).cpu()
        return costs

    def _inverse_blocks(self, side: int, idx: Tensor) -> Tensor:
        """Blocks ``M^-1[s, s]`` of ``G^-1`` (``side`` 0) or ``A^-1`` for index sets ``idx: (k, w)``."""
        k, w = idx.shape
        rows = self._inverse_rows(side, idx.flatten()).reshape(k, w, -1)
        return torch.take_along_dim(rows, idx[:, None, :].expand(k, w, w), dim=2)

    def quadratic(self, delta: Tensor) -> float:
        d = self._local(delta)
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        if self.rank > 2 and self.d_out * self.d_in <= DENSE_FALLBACK_MAX:
            return self.dense.quadratic(delta)
        for g, a in self._factors:
            gd = d if g is None else self._matrix(g, self.d_out) @ d
            total += ((gd if a is None else gd @ self._matrix(a, self.d_in)) * d).sum()
        return 0.5 * float(total)

    # -- removal ---------------------------------------------------------------------------
    def remove(self, theta: Tensor, removed: Tensor) -> tuple[Tensor, float]:
        mask = self._mask(removed, self.device)
        if self.rank == 1:
            rows, cols = mask.all(dim=1), mask.all(dim=0)
            if torch.equal(mask, rows[:, None] | cols[None, :]):
                return self.remove_rows_cols(theta, rows, cols, update=True)
        if self.rank <= 2:
            return self.remove_elements(theta, mask, chunk_size=None, update=True)
        return self.dense.remove(theta, removed)

    def remove_rows_cols(
        self, theta: Tensor, rows: Tensor, cols: Tensor, update: bool = True
    ) -> tuple[Tensor, float]:
        rows = as_mask(rows, self.d_out, "rows").to(self.device)
        cols = as_mask(cols, self.d_in, "cols").to(self.device)
        if not update or self.is_identity:
            return self.zero(theta, rows[:, None] | cols[None, :])
        if self.rank != 1:
            return self.dense.remove_rows_cols(theta, rows, cols, update=True)
        t = self._local(theta).clone()
        cost = 0.0
        r_idx = rows.nonzero().flatten()
        if len(r_idx):
            g_rows = self._inverse_rows(0, r_idx)  # G^-1[R, :] = G^-1[:, R]^T
            coef = torch.linalg.solve(g_rows[:, r_idx], t[r_idx])  # (|R|, d_in) = (G^-1_RR)^-1 W_R
            cost += 0.5 * float((coef * (t[r_idx] @ self.a)).sum())
            t = t - g_rows.T @ coef
            t[r_idx] = 0.0
        c_idx = cols.nonzero().flatten()
        keep = (~rows).nonzero().flatten()
        if len(c_idx) and len(keep):
            sub = t[keep]
            a_rows = self._inverse_rows(1, c_idx)  # A^-1[C, :]
            coef = torch.linalg.solve(a_rows[:, c_idx], sub[:, c_idx].T).T  # W_C (A^-1_CC)^-1
            g_kk = self.g[keep][:, keep]
            cost += 0.5 * float(((g_kk @ sub[:, c_idx]) * coef).sum())
            sub = sub - coef @ a_rows
            sub[:, c_idx] = 0.0
            t[keep] = sub
        t[:, c_idx] = 0.0
        return t.to(theta.device), cost

    def remove_elements(
        self,
        theta: Tensor,
        removed: Tensor,
        *,
        chunk_size: ChunkSize = DEFAULT_CHUNK_SIZE,
        update: bool = True,
        sweep: Sweep = None,
    ) -> tuple[Tensor, float]:
        """Chunked element removal (see the base class); ``sweep`` (rank 1: ``sequential``
        by default; rank 2: ``gauss-seidel`` only)."""
        check_sweep(sweep)
        if not update or self.is_identity:
            return self.zero(theta, removed)
        if self.rank > 2:
            return self.dense.remove_elements(theta, removed, chunk_size=chunk_size, update=True,
                                              sweep=sweep)
        t = self._local(theta)
        mask = self._mask(removed, self.device)
        if not bool(mask.any()):
            return t.to(theta.device), 0.0
        if self.rank == 1 and sweep != "gauss-seidel":
            new, cost = remove_elements_sequential(t, mask, self.g_inv_upper, self.a_inv, chunk_size)
            if cost is not None:  # the steps' costs add up (see the module)
                return new.to(theta.device), cost
        elif self.rank == 1:
            new = remove_elements_rank1(t, mask, self.g_inv, self.a_inv, chunk_size)
        elif sweep == "sequential":
            raise self._unsupported("the sequential sweep")
        else:
            new = self.eigen.remove_elements(t, mask, chunk_size)
        return new.to(theta.device), self.quadratic(new - t)

