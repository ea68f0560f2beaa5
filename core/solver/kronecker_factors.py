"""The damped factorisations of a Kronecker curvature ``F = sum_r G_r ⊗ A_r``.

Computed once per solver, on first use: damped Cholesky factors of the first term, the
diagonals and rows of ``G^-1`` and ``A^-1`` solved from them (full inverses only when an
element update needs them), and for rank 2 the joint eigenbasis of both terms.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property

import torch
from torch import Tensor

from llm_surgeon.curvature.types import KroneckerCurvature
from llm_surgeon.errors import NumericalError
from llm_surgeon.solver.factor import DampedFactor, Damping, damped_cholesky, damping_schedule
from llm_surgeon.solver.kronecker_rank2 import EigenKronecker, joint_eigenbasis


class KroneckerFactors:
    """Damped factors of a Kronecker curvature and what is solved from them.

    Args:
        curvature: the (already restricted) Kronecker curvature, undamped.
        damping: relative damping of ``G`` and ``A`` (of the first term).

    Attributes:
        escalations: how often damping had to be escalated for the factorisations
            (0 until they are computed); also passed to ``report_escalations``, which
            the solver class provides.
    """

    report_escalations: Callable[[int], None]

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

    @property
    def rank(self) -> int:
        """Number of Kronecker terms."""
        return self.curvature.rank

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
    def g_inv_upper(self) -> Tensor:
        """``U`` (rank 1), upper triangular with ``G^-1 = U^T U``, ``(d_out, d_out)``."""
        f = self._factors[0][0]
        return self._identity(self.d_out) if f is None else f.inverse_cholesky_upper()

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


def _symmetric(m: Tensor | None) -> Tensor | None:
    """``(m + m^T) / 2`` in float64 (``None`` stays the identity)."""
    if m is None:
        return None
    m = m.to(torch.float64)
    if not torch.isfinite(m.sum()):
        raise NumericalError(f"a Kronecker factor ({m.shape[0]}x{m.shape[0]}) has non-finite entries")
    return m.add(m.T).mul_(0.5)

