"""Damping, and the one damped Cholesky factorisation with escalating damping.

A factor ``M`` (a Kronecker factor ``G`` or ``A``, a dense curvature, SparseGPT's ``H``
or a chunk system ``E_K F^-1 E_K^T``) is damped relative to its mean diagonal,
``M + lam * mean(diag M) * I``, and factorised in float64. When the Cholesky
factorisation fails, ``lam`` follows :func:`damping_schedule` (multiplied by
``escalation`` up to ``max_escalations`` times); if it still fails a
:class:`~llm_surgeon.errors.NumericalError` names the factor.
"""

from __future__ import annotations

import logging

import attrs
import torch
from torch import Tensor

from llm_surgeon.errors import NumericalError
from llm_surgeon.util.torch_util import torch_threads

log = logging.getLogger(__name__)

#: Relative damping used as the starting point of an escalation when none was asked for.
ZERO_DAMPING_START = 1e-8

#: Factors of at least this size form their inverses (:meth:`DampedFactor.inverse`,
#: :meth:`~DampedFactor.inverse_cholesky_upper`, :meth:`~DampedFactor.inverse_diagonal`)
#: from a float32 factorisation, returned in float64. One thread, n = 1536: Cholesky 32
#: against 81 ms, triangular inverse 91 against 173 ms, potri 57 against 147 ms. On
#: SmolLM2-sized problems the element updates' true costs moved by about 1e-7 relative.
#: A factor that float32 cannot factorise falls back to float64.
FLOAT32_INVERSE_MIN = 512


@attrs.frozen
class Damping:
    """Damping relative to the mean diagonal of each factor: ``G + g * mean(diag G) * I``.

    An argument of the solve (:func:`llm_surgeon.solver.solver_for`), not a property of
    the curvature. If a factorisation fails, damping follows :func:`damping_schedule`
    and the solver reports how often it escalated.
    """

    g: float = attrs.field(default=0.01, validator=attrs.validators.ge(0.0))
    a: float = attrs.field(default=0.01, validator=attrs.validators.ge(0.0))
    escalation: float = attrs.field(default=10.0, validator=attrs.validators.gt(1.0))
    max_escalations: int = attrs.field(default=6, validator=attrs.validators.ge(0))


def damping_schedule(base: float, escalation: float, max_escalations: int,
                     zero_start: float = ZERO_DAMPING_START) -> list[float]:
    """Relative dampings to try in turn: ``base``, then escalated ``max_escalations`` times.

    Each step multiplies by ``escalation``; from ``base = 0`` the first step is ``zero_start``.
    """
    lams = [float(base)]
    for _ in range(max_escalations):
        lams.append(lams[-1] * escalation if lams[-1] > 0 else zero_start)
    return lams


@attrs.define(eq=False)
class DampedFactor:
    """A damped SPD matrix and its factorisation.

    Large factors (from :data:`FLOAT32_INVERSE_MIN` rows) are factorised in float32 first:
    their inverses are formed from that factor, and the float64 Cholesky factor is only
    computed if something asks for it (row and column updates do).

    Attributes:
        matrix: the damped matrix ``M + lam * mean(diag M) * I``, ``(n, n)`` float64.
        damping: the relative damping ``lam`` that was finally used.
        escalations: how many times the damping had to be escalated.
    """

    matrix: Tensor
    _cholesky: Tensor | None
    damping: float
    escalations: int
    low: Tensor | None = attrs.field(default=None, kw_only=True)  # float32 factor, large only

    @property
    def cholesky(self) -> Tensor:
        """The lower Cholesky factor ``L`` with ``L L^T = matrix``, float64 (computed once)."""
        if self._cholesky is None:
            self._cholesky = torch.linalg.cholesky(self.matrix)
        return self._cholesky

    def inverse(self) -> Tensor:
        """``matrix^-1``, ``(n, n)``, exactly symmetric and row-major (contiguous).

        Row-major matters: the solvers gather rows of the inverse (``index_select(0, ...)``)
        in their inner loops, and ``cholesky_solve`` returns a column-major result, whose
        row gathers are strided and about 3x slower.
        """
        # LAPACK's potri (2n^3/3 flops) on one thread: half the time of cholesky_solve
        # against the identity (2n^3), and its multi-threaded CPU path can be far slower
        # (see torch_threads). Symmetrise the rounding.
        chol = self.low if self.low is not None else self.cholesky
        with torch_threads(1):
            inv = torch.cholesky_inverse(chol).to(self.matrix.dtype)
        return (0.5 * (inv + inv.T)).contiguous()

    def inverse_cholesky_upper(self) -> Tensor:
        """``U``, upper triangular with ``matrix^-1 = U^T U``, ``(n, n)`` row-major.

        Row ``r`` of ``U`` scaled by ``U_rr`` is row ``r`` of the inverse of the trailing
        block ``matrix[r:, r:]`` (as in OBS/SparseGPT's sequential updates). With ``P`` the
        reversal, ``P M P = L' L'^T`` gives ``M^-1 = (P L'^-1 P)^T (P L'^-1 P)``: one more
        factorisation and a triangular inverse, and no full inverse.
        """
        chol = _cholesky_in(self.matrix.flip(0, 1), self.low is not None)  # a permuted SPD matrix
        eye = torch.eye(chol.shape[0], dtype=chol.dtype, device=chol.device)
        u = torch.linalg.solve_triangular(chol, eye, upper=False).flip(0, 1)
        return u.to(self.matrix.dtype).contiguous()

    def inverse_diagonal(self) -> Tensor:
        """``diag(matrix^-1)``, ``(n,)``, without forming the inverse.

        ``matrix^-1 = L^-T L^-1``, so its diagonal holds the column sums of squares of
        ``L^-1``: one triangular inverse (``n^3 / 3`` flops against ``n^3`` for the inverse).
        """
        chol = self.low if self.low is not None else self.cholesky
        eye = torch.eye(chol.shape[0], dtype=chol.dtype, device=chol.device)
        l_inv = torch.linalg.solve_triangular(chol, eye, upper=False)
        return l_inv.square_().sum(dim=0).to(self.matrix.dtype)

    def inverse_rows(self, index: Tensor) -> Tensor:
        """Rows ``index`` of ``matrix^-1``, ``(len(index), n)``, row-major.

        Solves against the selected unit vectors only: ``n^2 len(index)`` flops instead
        of the ``n^3`` of a full inverse.
        """
        n = self.cholesky.shape[0]
        units = torch.zeros(n, len(index), dtype=self.cholesky.dtype, device=self.cholesky.device)
        units[index.to(units.device), torch.arange(len(index), device=units.device)] = 1.0
        return torch.cholesky_solve(units, self.cholesky).T.contiguous()  # symmetric: columns = rows


def _cholesky_in(matrix: Tensor, low: bool) -> Tensor:
    """The Cholesky factor of ``matrix`` (float64), in float32 if ``low`` and float32 can."""
    if low:
        chol, info = torch.linalg.cholesky_ex(matrix.to(torch.float32))
        if int(info) == 0:
            return chol
    return torch.linalg.cholesky(matrix)


def damped_cholesky(
    matrix: Tensor,
    damping: float,
    *,
    escalation: float = 10.0,
    max_escalations: int = 6,
    zero_start: float = ZERO_DAMPING_START,
    name: str = "factor",
    warn: bool = True,
) -> DampedFactor:
    """Damp ``matrix`` relative to its mean diagonal and Cholesky-factorise it.

    The factorisation is float64, or float32 for a matrix of at least
    :data:`FLOAT32_INVERSE_MIN` rows when float32 can factorise it at that damping (the
    float64 factor is then computed on demand, see :class:`DampedFactor`).

    Args:
        matrix: symmetric PSD ``(n, n)`` (any float dtype / device).
        damping: relative damping ``lam >= 0``.
        escalation: factor applied to ``lam`` after each failure.
        max_escalations: number of escalations before giving up.
        zero_start: the first escalated ``lam`` when ``lam == 0``.
        name: how the factor is called in error messages (e.g. ``"G (output factor)"``).
        warn: log a warning when the damping had to be escalated.

    Returns:
        The damped factor, with the number of escalations it needed.

    Raises:
        NumericalError: non-finite entries, or the factorisation failed at every damping.
    """
    m = matrix.to(torch.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"{name} must be a square matrix, got shape {tuple(m.shape)}")
    if not torch.isfinite(m.sum()):  # NaN and inf propagate into the sum
        raise NumericalError(f"{name} ({m.shape[0]}x{m.shape[0]}) has non-finite entries")
    m = m.add(m.T).mul_(0.5)
    scale = float(m.diagonal().mean()) if m.shape[0] else 1.0
    if not scale > 0.0:
        scale = 1.0
    lams = damping_schedule(damping, escalation, max_escalations, zero_start)
    for attempt, lam in enumerate(lams):
        damped = m.clone() if lam > 0 else m
        if lam > 0:
            damped.diagonal().add_(lam * scale)
        factor = _try_factor(damped, lam, attempt)
        if factor is not None:
            if attempt and warn:
                log.warning("%s: damping escalated %d time(s) to %.3g", name, attempt, lam)
            return factor
    raise NumericalError(
        f"Cholesky of {name} ({m.shape[0]}x{m.shape[0]}) is not positive definite: it failed "
        f"even with relative damping {lams[-1]:.3g} after {max_escalations} escalations"
    )


def _try_factor(damped: Tensor, lam: float, attempt: int) -> DampedFactor | None:
    """The factor of ``damped`` if it is positive definite (float32 first when large), else ``None``."""
    if damped.shape[0] >= FLOAT32_INVERSE_MIN:
        low, info = torch.linalg.cholesky_ex(damped.to(torch.float32))
        if int(info) == 0:
            return DampedFactor(damped, None, lam, attempt, low=low)
    chol, info = torch.linalg.cholesky_ex(damped)
    return DampedFactor(damped, chol, lam, attempt) if int(info) == 0 else None
