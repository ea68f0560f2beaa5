"""Curvature of the loss with respect to one Linear layer's weights, and estimator contract.

Weights are laid out as ``theta = [W | b]`` of shape ``(d_out, d_in)`` where ``d_in``
counts the bias column (an input of ones) when the layer has a bias. Vectorisation is
row-major: weight ``(o, i)`` has index ``o * d_in + i``. With this layout a Kronecker
factorisation reads ``F = G ⊗ A`` with ``G: (d_out, d_out)`` over outputs and
``A: (d_in, d_in)`` over inputs.

A :class:`Curvature` is read-only; the algebra the solver needs (costs, damped
inverses, updates) is provided by :meth:`Curvature.solver`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs
import torch
from torch import Tensor

if TYPE_CHECKING:
    from torch import nn

    from llm_surgeon.adapters import PrunableModule
    from llm_surgeon.solver.base import CurvatureSolver


@attrs.frozen
class Damping:
    """Damping relative to the mean diagonal of each factor: ``G + g * mean(diag G) * I``.

    If a factorisation fails, damping is multiplied by ``escalation`` up to
    ``max_escalations`` times (and the escalation is reported).
    """

    g: float = attrs.field(default=0.01, validator=attrs.validators.ge(0.0))
    a: float = attrs.field(default=0.01, validator=attrs.validators.ge(0.0))
    escalation: float = attrs.field(default=10.0, validator=attrs.validators.gt(1.0))
    max_escalations: int = attrs.field(default=6, validator=attrs.validators.ge(0))


class Curvature(ABC):
    """A positive semi-definite curvature matrix ``F`` of one layer, never formed."""

    d_out: int
    d_in: int

    @abstractmethod
    def diag(self) -> Tensor:
        """The diagonal of ``F`` in weight layout, ``(d_out, d_in)``."""

    @abstractmethod
    def to_dense(self) -> Tensor:
        """``F`` as a dense ``(d_out*d_in, d_out*d_in)`` matrix (tests and tiny problems only)."""

    @abstractmethod
    def restrict(self, rows: Tensor | None, cols: Tensor | None) -> Curvature:
        """Curvature of the live sub-matrix ``theta[rows][:, cols]`` (``None`` keeps all)."""

    @property
    @abstractmethod
    def nbytes(self) -> int:
        """Memory held by this curvature's tensors."""

    def diagonal(self) -> DiagonalCurvature:
        """The diagonal approximation ``diag(F)`` (OBD-style methods)."""
        return DiagonalCurvature(self.diag())

    @abstractmethod
    def solver(self) -> CurvatureSolver:
        """The algebra (costs, updates) specialised to this curvature's structure."""


@attrs.define(eq=False)
class KroneckerCurvature(Curvature):
    """``F = sum_r G_r ⊗ A_r``; a factor of ``None`` is the identity.

    Attributes:
        factors: ``((G_1, A_1), ..., (G_R, A_R))`` with ``G_r: (d_out, d_out)`` and
            ``A_r: (d_in, d_in)``, undamped.
        d_out, d_in: the layer's shape (``d_in`` counts the bias column).
        damping: applied by the solver when it factorises.
    """

    factors: tuple[tuple[Tensor | None, Tensor | None], ...]
    d_out: int
    d_in: int
    damping: Damping = attrs.field(factory=Damping)
    info: dict[str, Any] = attrs.field(factory=dict)

    @property
    def rank(self) -> int:
        """Number of Kronecker terms ``R_K``."""
        return len(self.factors)

    def _dtype_device(self) -> tuple[torch.dtype, torch.device]:
        for g, a in self.factors:
            for t in (g, a):
                if t is not None:
                    return t.dtype, t.device
        return torch.float32, torch.device("cpu")

    def diag(self) -> Tensor:
        dtype, device = self._dtype_device()
        out = torch.zeros(self.d_out, self.d_in, dtype=dtype, device=device)
        for g, a in self.factors:
            dg = torch.ones(self.d_out, dtype=dtype, device=device) if g is None else g.diagonal()
            da = torch.ones(self.d_in, dtype=dtype, device=device) if a is None else a.diagonal()
            out += torch.outer(dg, da)
        return out

    def to_dense(self) -> Tensor:
        dtype, device = self._dtype_device()
        eye_o = torch.eye(self.d_out, dtype=dtype, device=device)
        eye_i = torch.eye(self.d_in, dtype=dtype, device=device)
        return sum(
            torch.kron(eye_o if g is None else g, eye_i if a is None else a) for g, a in self.factors
        )

    def restrict(self, rows: Tensor | None, cols: Tensor | None) -> KroneckerCurvature:
        def sub(m: Tensor | None, idx: Tensor | None) -> Tensor | None:
            if m is None or idx is None:
                return m
            return m.index_select(0, idx).index_select(1, idx)

        return KroneckerCurvature(
            factors=tuple((sub(g, rows), sub(a, cols)) for g, a in self.factors),
            d_out=self.d_out if rows is None else len(rows),
            d_in=self.d_in if cols is None else len(cols),
            damping=self.damping,
            info=self.info,
        )

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for pair in self.factors for t in pair if t is not None)

    def solver(self) -> CurvatureSolver:
        from llm_surgeon.solver.kronecker import KroneckerSolver

        return KroneckerSolver(self)


@attrs.define(eq=False)
class DiagonalCurvature(Curvature):
    """``F = diag(values)`` with ``values: (d_out, d_in)`` (OBD; costs only, no update)."""

    values: Tensor
    damping: float = 0.0

    @property
    def d_out(self) -> int:  # type: ignore[override]
        return self.values.shape[0]

    @property
    def d_in(self) -> int:  # type: ignore[override]
        return self.values.shape[1]

    def diag(self) -> Tensor:
        return self.values

    def to_dense(self) -> Tensor:
        return torch.diag(self.values.flatten())

    def restrict(self, rows: Tensor | None, cols: Tensor | None) -> DiagonalCurvature:
        v = self.values
        if rows is not None:
            v = v.index_select(0, rows)
        if cols is not None:
            v = v.index_select(1, cols)
        return DiagonalCurvature(v, self.damping)

    @property
    def nbytes(self) -> int:
        return self.values.numel() * self.values.element_size()

    def solver(self) -> CurvatureSolver:
        from llm_surgeon.solver.diagonal import DiagonalSolver

        return DiagonalSolver(self)


@attrs.define(eq=False)
class DenseCurvature(Curvature):
    """An explicit ``F: (d_out*d_in, d_out*d_in)``: the reference for tiny problems."""

    matrix: Tensor
    d_out: int
    d_in: int
    damping: float = 0.0

    def diag(self) -> Tensor:
        return self.matrix.diagonal().reshape(self.d_out, self.d_in)

    def to_dense(self) -> Tensor:
        return self.matrix

    def restrict(self, rows: Tensor | None, cols: Tensor | None) -> DenseCurvature:
        r = torch.arange(self.d_out) if rows is None else rows.cpu()
        c = torch.arange(self.d_in) if cols is None else cols.cpu()
        idx = (r[:, None] * self.d_in + c[None, :]).flatten().to(self.matrix.device)
        return DenseCurvature(self.matrix[idx][:, idx], len(r), len(c), self.damping)

    @property
    def nbytes(self) -> int:
        return self.matrix.numel() * self.matrix.element_size()

    def solver(self) -> CurvatureSolver:
        from llm_surgeon.solver.dense import DenseSolver

        return DenseSolver(self)


@attrs.define
class CurvatureResult:
    """What an estimator returns for one shot.

    Attributes:
        curvatures: module name -> curvature.
        seconds_passes: time in forward/backward passes over calibration data.
        seconds_algebra: time in factor algebra (normalisation, power iteration maths...).
        passes: number of passes over the calibration data.
        info: estimator-specific diagnostics (e.g. damping escalations, sigma values).
    """

    curvatures: dict[str, Curvature]
    seconds_passes: float = 0.0
    seconds_algebra: float = 0.0
    passes: int = 0
    info: dict[str, Any] = attrs.field(factory=dict)

    @property
    def nbytes(self) -> int:
        """Total memory of all curvatures."""
        return sum(c.nbytes for c in self.curvatures.values())


class CurvatureEstimator(ABC):
    """Measures the curvature of every prunable module on calibration data.

    Instances hold per-run state (for example the previous shot's factors for a warm
    start) and are created fresh for each run by the registry.
    """

    #: Whether the estimator needs backward passes (gradients of the loss).
    needs_gradients: bool = True

    @abstractmethod
    def estimate(
        self,
        model: nn.Module,
        modules: Sequence[PrunableModule],
        batches: Sequence[Tensor],
        *,
        previous: Mapping[str, Curvature] | None = None,
        progress: bool = True,
    ) -> CurvatureResult:
        """Estimate the curvature of each module.

        Args:
            model: the (possibly already pruned) causal LM, in eval mode.
            modules: the prunable modules to measure.
            batches: token-id tensors ``(batch, seqlen)``; the loss is next-token
                cross-entropy (summed per token: one ``g`` per token).
            previous: last shot's curvatures by module name (warm start), if any.
            progress: show a progress bar over batches.
        """
