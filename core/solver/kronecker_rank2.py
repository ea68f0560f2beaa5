"""Algebra of a sum of two Kronecker products in their joint eigenbasis.

For ``F = G_1 ⊗ A_1 + G_2 ⊗ A_2`` with the first term positive definite (damped) and the
second only symmetric, the generalised eigendecompositions ``U^T G_1 U = I,
U^T G_2 U = diag(lam)`` and ``V^T A_1 V = I, V^T A_2 V = diag(mu)`` diagonalise both
terms at once (``F`` is positive definite iff every ``S_kl > 0``)::

    F^-1 = (U ⊗ V) diag(1/S) (U ⊗ V)^T,   S_kl = lam_k mu_l + 1,
    F^-1 vec(X) = vec(U (W ∘ (U^T X V)) V^T),   W = 1/S,
    [F^-1]_(ij),(ij) = ((U∘U) W (V∘V)^T)_ij.

A single row ``r`` has ``E_r F^-1 E_r^T = V diag(w_r) V^T`` with ``w = (U∘U) W``, whose
inverse is ``A_1 V diag(1/w_r) V^T A_1``; columns are symmetric. Chunks of removed
elements gather ``E_c F^-1 E_c^T`` one pair of rows at a time through
``T[i, i', l] = sum_k U_ik U_i'k W_kl``.
"""

from __future__ import annotations

import attrs
import torch
from torch import Tensor

from llm_surgeon.solver.base import ChunkSize, plan_chunks
from llm_surgeon.solver.elements import check_joint, solve_chunk

#: Rank-2 chunks span at most this many rows (the gathered system grows with rows^2).
MAX_CHUNK_ROWS = 8


def joint_eigenbasis(m1: Tensor, m2_chol: Tensor) -> tuple[Tensor, Tensor]:
    """Generalised eigenpairs of ``(m1, m2)`` with ``m2 = L L^T``.

    Returns:
        ``(lam, U)`` with ``U^T m2 U = I`` and ``U^T m1 U = diag(lam)``.
    """
    n = m1.shape[0]
    eye = torch.eye(n, dtype=m1.dtype, device=m1.device)
    l_inv = torch.linalg.solve_triangular(m2_chol, eye, upper=False)
    c = l_inv @ m1 @ l_inv.T
    lam, q = torch.linalg.eigh(0.5 * (c + c.T))
    return lam, l_inv.T @ q


@attrs.frozen
class EigenKronecker:
    """``F^-1`` of a rank-2 Kronecker curvature in its joint eigenbasis.

    Attributes:
        u: ``(d_out, d_out)`` with ``U^T G_1 U = I``.
        v: ``(d_in, d_in)`` with ``V^T A_1 V = I``.
        w: ``1 / S``, ``(d_out, d_in)``.
        g_b: ``G_1`` (damped, positive definite), ``(d_out, d_out)``.
        a_b: ``A_1`` (damped, positive definite), ``(d_in, d_in)``.
    """

    u: Tensor
    v: Tensor
    w: Tensor
    g_b: Tensor
    a_b: Tensor

    def apply_inverse(self, x: Tensor) -> Tensor:
        """``F^-1 vec(x)`` as a matrix, ``x: (d_out, d_in)``."""
        return self.u @ (self.w * (self.u.T @ x @ self.v)) @ self.v.T

    def inverse_diag(self) -> Tensor:
        """``diag(F^-1)`` in weight layout, ``(d_out, d_in)``."""
        return (self.u * self.u) @ self.w @ (self.v * self.v).T

    def row_costs(self, theta: Tensor) -> Tensor:
        """``1/2 theta_r^T (E_r F^-1 E_r^T)^-1 theta_r`` per row, ``(d_out,)``."""
        w_rows = (self.u * self.u) @ self.w  # (d_out, d_in): eigen-weights of each row
        t = theta @ self.a_b @ self.v
        return 0.5 * (t * t / w_rows).sum(dim=1)

    def col_costs(self, theta: Tensor) -> Tensor:
        """``1/2 theta_c^T (E_c F^-1 E_c^T)^-1 theta_c`` per column, ``(d_in,)``."""
        w_cols = self.w @ (self.v * self.v).T  # (d_out, d_in): eigen-weights of each column
        t = self.u.T @ self.g_b @ theta
        return 0.5 * (t * t / w_cols).sum(dim=0)

    def _system(self, rows: Tensor, cols: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``E_c F^-1 E_c^T`` of one chunk (sorted row-major); also its rows and row index."""
        uniq, inv, counts = torch.unique_consecutive(rows, return_inverse=True, return_counts=True)
        nu, width = len(uniq), int(counts.max())
        starts = torch.cumsum(counts, 0) - counts
        slot = torch.arange(len(rows), device=rows.device) - starts[inv]
        q = torch.zeros(nu, width, self.v.shape[1], dtype=self.v.dtype, device=self.v.device)
        q[inv, slot] = self.v[cols]
        uu = self.u[uniq]  # (nu, d_out)
        t = (uu[:, None, :] * uu[None, :, :]) @ self.w  # (nu, nu, d_in)
        blocks = (q[:, None] * t[:, :, None, :]) @ q.transpose(1, 2)[None]  # (nu, nu, width, width)
        pos = inv * width + slot
        full = blocks.permute(0, 2, 1, 3).reshape(nu * width, nu * width)
        return full[pos[:, None], pos[None, :]], uniq, inv

    def remove_elements(self, theta: Tensor, removed: Tensor, chunk_size: ChunkSize) -> Tensor:
        """Chunked correlated removal (see :mod:`llm_surgeon.solver.elements`); new ``theta``."""
        d_out, d_in = theta.shape
        flat, bounds = plan_chunks(removed, chunk_size)
        if len(flat) == 0:
            return theta.clone()
        rows_all, cols_all = flat // d_in, flat % d_in
        bounds = _split_by_rows(rows_all, bounds, None if chunk_size is None else MAX_CHUNK_ROWS)
        check_joint(max(b - a for a, b in zip(bounds[:-1], bounds[1:], strict=True)), chunk_size)
        z = torch.zeros_like(theta)  # W ∘ (U^T X V) accumulated over chunks
        for start, end in zip(bounds[:-1], bounds[1:], strict=True):
            rows, cols = rows_all[start:end], cols_all[start:end]
            system, uniq, inv = self._system(rows, cols)
            current = theta[uniq] - (self.u[uniq] @ z) @ self.v.T
            alpha = solve_chunk(system, current[inv, cols])
            x = torch.zeros(len(uniq), d_in, dtype=theta.dtype, device=theta.device)
            x[inv, cols] = alpha
            z += self.w * (self.u[uniq].T @ (x @ self.v))
        new = theta - self.u @ z @ self.v.T
        new[removed] = 0.0
        return new


def _split_by_rows(rows: Tensor, bounds: list[int], max_rows: int | None) -> list[int]:
    """Split chunks so that none spans more than ``max_rows`` distinct rows."""
    if max_rows is None:
        return bounds
    out = [0]
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        _, counts = torch.unique_consecutive(rows[start:end], return_counts=True)
        pos = start
        for i in range(0, len(counts), max_rows):
            pos += int(counts[i:i + max_rows].sum())
            out.append(pos)
    return out
