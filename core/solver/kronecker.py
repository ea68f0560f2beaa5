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

from functools import cached_property

import torch
from torch import Tensor

from llm_surgeon.curvature.types import DenseCurvature, KroneckerCurvature
from llm_surgeon.errors import NumericalError
from llm_surgeon.solver.base import (
    DEFAULT_CHUNK_SIZE,
    ChunkSize,
    CurvatureSolver,
    UnsupportedCurvatureError,
    as_mask,
)
from llm_surgeon.solver.dense import DenseSolver
from llm_surgeon.solver.elements import remove_elements_rank1
from llm_surgeon.solver.factor import DampedFactor, Damping, damped_cholesky, damping_schedule
from llm_surgeon.solver.kronecker_rank2 import EigenKronecker, joint_eigenbasis

#: Largest ``d_out * d_in`` for which an unsupported case is solved densely.
DENSE_FALLBACK_MAX = 4096


class KroneckerSolver(CurvatureSolver):
    """Solver for ``F = sum_r G_r ⊗ A_r``: closed forms for rank 1, eigenbasis for rank 2.

    Factorisations are computed once per instance, on first use, and reused by all
    costs and updates. Full inverses are formed only when an update needs them (element
    sets): costs read diagonals of the inverses and row/column updates their rows, both
    solved from the Cholesky factors.

    Args:
        curvature: the (already restricted) Kronecker curvature, undamped.
        damping: relative damping of ``G`` and ``A`` (of the first term).

    Attributes:
        escalations: how often damping had to be escalated for the factorisations
            (0 until they are computed).
    """

    def __init__(self, curvature: KroneckerCurvature, damping: Damping | None = None):
        if curvature.rank < 1:
            raise ValueError("a Kronecker curvature needs at least one term")
        self.curvature = curvature
        self.damping = damping if damping is not None else Damping()
        self.escalations = 0
        self.d_out = curvature.d_out
        self.d_in = curvature.d_in
        self.device = curvature.device
        self._eye: dict[int, Tensor] = {}

    # -- factors -------------------------------------------------------------------
    def _identity(self, n: int) -> Tensor:
        if n not in self._eye:
            self._eye[n] = torch.eye(n, dtype=torch.float64, device=self.device)
        return self._eye[n]

    def _damp(self, m: Tensor | None, side: str, term: int, lam: float) -> DampedFactor | None:
        if m is None:
            return None
        d = self.damping
        what = "output factor G" if side == "G" else "input factor A"
        name = what + (f" of Kronecker term {term + 1}" if self.rank > 1 else "")
        return damped_cholesky(m, lam, escalation=d.escalation, max_escalations=d.max_escalations, name=name)

    @cached_property
    def _terms(self) -> tuple[list[tuple[DampedFactor | None, DampedFactor | None]], EigenKronecker | None]:
        """Damped factors of every term, and the joint eigenbasis for rank 2.

        Only the first term is damped (and must be positive definite): further terms
        of a nearest-Kronecker sum are symmetric but usually indefinite. For rank 2, if
        ``S = 1 + lam mu`` is not positive, the first term's damping is escalated.
        """
        d = self.damping
        (g0, a0), *rest = self.curvature.factors
        others = [(_symmetric(g), _symmetric(a)) for g, a in rest]
        attempts = d.max_escalations if self.rank == 2 else 0
        schedule = zip(damping_schedule(d.g, d.escalation, attempts),
                       damping_schedule(d.a, d.escalation, attempts), strict=True)
        for attempt, (lam_g, lam_a) in enumerate(schedule):  # noqa: B007 - read after the loop
            first = (self._damp(g0, "G", 0, lam_g), self._damp(a0, "A", 0, lam_a))
            eigen = self._eigen(first, others[0]) if self.rank == 2 else None
            if self.rank != 2 or eigen is not None:
                break
        else:
            raise NumericalError(
                f"rank-2 Kronecker curvature ({self.d_out}x{self.d_in}) is not positive definite "
                f"even with the first term's damping escalated {d.max_escalations} times"
            )
        self.escalations = attempt + sum(f.escalations for f in first if f is not None)
        self.report_escalations(self.escalations)
        return [first, *others], eigen

    @property
    def _factors(self) -> list[tuple[DampedFactor | None, DampedFactor | None]]:
        return self._terms[0]

    def _matrix(self, f: DampedFactor | Tensor | None, n: int) -> Tensor:
        if f is None:
            return self._identity(n)
        return f.matrix if isinstance(f, DampedFactor) else f

    def _eigen(self, first: tuple, second: tuple) -> EigenKronecker | None:
        """Joint eigenbasis of ``first`` (positive definite) and ``second``; ``None`` if ``S <= 0``."""
        (g_b, a_b), (g_o, a_o) = first, second
        lam, u = joint_eigenbasis(self._matrix(g_o, self.d_out), self._cholesky(g_b, self.d_out))
        mu, v = joint_eigenbasis(self._matrix(a_o, self.d_in), self._cholesky(a_b, self.d_in))
        s = 1.0 + lam[:, None] * mu[None, :]
        if not float(s.min()) > 1e-10 * float(s.max()):
            return None
        return EigenKronecker(u, v, 1.0 / s, self._matrix(g_b, self.d_out), self._matrix(a_b, self.d_in))

    def _cholesky(self, f: DampedFactor | None, n: int) -> Tensor:
        return self._identity(n) if f is None else f.cholesky

    @cached_property
    def g(self) -> Tensor:
        """Damped ``G`` (rank 1), ``(d_out, d_out)``."""
        return self._matrix(self._factors[0][0], self.d_out)

    @cached_property
    def a(self) -> Tensor:
        """Damped ``A`` (rank 1), ``(d_in, d_in)``."""
        return self._matrix(self._factors[0][1], self.d_in)

    @cached_property
    def g_inv(self) -> Tensor:
        """``G^-1`` (rank 1), ``(d_out, d_out)``."""
        f = self._factors[0][0]
        return self._identity(self.d_out) if f is None else f.inverse()

    @cached_property
    def a_inv(self) -> Tensor:
        """``A^-1`` (rank 1), ``(d_in, d_in)``."""
        f = self._factors[0][1]
        return self._identity(self.d_in) if f is None else f.inverse()

    @cached_property
    def g_inv_diag(self) -> Tensor:
        """``diag(G^-1)`` (rank 1), ``(d_out,)``, without forming ``G^-1``."""
        return self._inverse_diagonal(0, self.d_out)

    @cached_property
    def a_inv_diag(self) -> Tensor:
        """``diag(A^-1)`` (rank 1), ``(d_in,)``, without forming ``A^-1``."""
        return self._inverse_diagonal(1, self.d_in)

    def _formed_inverse(self, side: int) -> Tensor | None:
        """``G^-1`` (``side`` 0) or ``A^-1`` (``side`` 1) if an update already formed it."""
        return self.__dict__.get(("g_inv", "a_inv")[side])

    def _inverse_diagonal(self, side: int, n: int) -> Tensor:
        f = self._factors[0][side]
        if f is None:
            return torch.ones(n, dtype=torch.float64, device=self.device)
        full = self._formed_inverse(side)
        return full.diagonal() if full is not None else f.inverse_diagonal()

    def _inverse_rows(self, side: int, index: Tensor) -> Tensor:
        """Rows ``index`` of ``G^-1`` (``side`` 0) or ``A^-1`` (``side`` 1), row-major."""
        full = self._formed_inverse(side)
        if full is not None:
            return full.index_select(0, index)
        f = self._factors[0][side]
        if f is None:
            return self._identity((self.d_out, self.d_in)[side]).index_select(0, index)
        return f.inverse_rows(index)

    @property
    def eigen(self) -> EigenKronecker:
        """The joint eigenbasis (rank 2)."""
        eigen = self._terms[1]
        assert eigen is not None, "the eigenbasis exists for rank-2 curvatures only"
        return eigen

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
    def rank(self) -> int:
        """Number of Kronecker terms."""
        return self.curvature.rank

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
    ) -> tuple[Tensor, float]:
        if not update or self.is_identity:
            return self.zero(theta, removed)
        if self.rank > 2:
            return self.dense.remove_elements(theta, removed, chunk_size=chunk_size, update=True)
        t = self._local(theta)
        mask = self._mask(removed, self.device)
        if not bool(mask.any()):
            return t.to(theta.device), 0.0
        if self.rank == 1:
            new = remove_elements_rank1(t, mask, self.g_inv, self.a_inv, chunk_size)
        else:
            new = self.eigen.remove_elements(t, mask, chunk_size)
        return new.to(theta.device), self.quadratic(new - t)


def _symmetric(m: Tensor | None) -> Tensor | None:
    """``(m + m^T) / 2`` in float64 (``None`` stays the identity)."""
    if m is None:
        return None
    m = m.to(torch.float64)
    if not torch.isfinite(m.sum()):
        raise NumericalError(f"a Kronecker factor ({m.shape[0]}x{m.shape[0]}) has non-finite entries")
    return m.add(m.T).mul_(0.5)

