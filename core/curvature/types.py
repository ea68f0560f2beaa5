"""Curvature of the loss with respect to one Linear layer's weights, and estimator contract.

Weights are laid out as ``theta = [W | b]`` of shape ``(d_out, d_in)`` where ``d_in``
counts the bias column (an input of ones) when the layer has a bias. Vectorisation is
row-major: weight ``(o, i)`` has index ``o * d_in + i``. With this layout a Kronecker
factorisation reads ``F = G ⊗ A`` with ``G: (d_out, d_out)`` over outputs and
``A: (d_in, d_in)`` over inputs.

A :class:`Curvature` is read-only data. The algebra (damped factorisations, costs,
updates) lives in :mod:`llm_surgeon.solver`, which picks a solver by curvature type
(:func:`llm_surgeon.solver.solver_for`); damping is an argument of that solve.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import attrs
import torch
from torch import Tensor


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

    @property
    def device(self) -> torch.device:
        """Where this curvature's tensors live (solvers factorise there)."""
        return self.diag().device

    def tensors(self) -> tuple[Tensor, ...]:
        """The tensors behind :attr:`nbytes` (curvatures of modules may share some)."""
        return ()

    def diagonal(self) -> DiagonalCurvature:
        """The diagonal approximation ``diag(F)`` (OBD-style methods)."""
        return DiagonalCurvature(self.diag())



@attrs.define(eq=False)
class KroneckerCurvature(Curvature):
    """``F = sum_r G_r ⊗ A_r``; a factor of ``None`` is the identity.

    Attributes:
        factors: ``((G_1, A_1), ..., (G_R, A_R))`` with ``G_r: (d_out, d_out)`` and
            ``A_r: (d_in, d_in)``, undamped.
        d_out, d_in: the layer's shape (``d_in`` counts the bias column).
        info: estimator diagnostics (e.g. singular values of the terms).
    """

    factors: tuple[tuple[Tensor | None, Tensor | None], ...]
    d_out: int
    d_in: int
    info: dict[str, Any] = attrs.field(factory=dict)

    @property
    def rank(self) -> int:
        """Number of Kronecker terms ``R_K``."""
        return len(self.factors)

    @property
    def device(self) -> torch.device:
        return self._dtype_device()[1]

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
            info=self.info,
        )

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors())

    def tensors(self) -> tuple[Tensor, ...]:
        return tuple(t for pair in self.factors for t in pair if t is not None)



@attrs.define(eq=False)
class DiagonalCurvature(Curvature):
    """``F = diag(values)`` with ``values: (d_out, d_in)`` (OBD; costs only, no update)."""

    values: Tensor

    @property
    def d_out(self) -> int:  # type: ignore[override]
        return self.values.shape[0]

    @property
    def d_in(self) -> int:  # type: ignore[override]
        return self.values.shape[1]

    @property
    def device(self) -> torch.device:
        return self.values.device

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
        return DiagonalCurvature(v)

    @property
    def nbytes(self) -> int:
        return self.values.numel() * self.values.element_size()



@attrs.define(eq=False)
class DenseCurvature(Curvature):
    """An explicit ``F: (d_out*d_in, d_out*d_in)``: the reference for tiny problems."""

    matrix: Tensor
    d_out: int
    d_in: int

    @property
    def device(self) -> torch.device:
        return self.matrix.device

    def diag(self) -> Tensor:
        return self.matrix.diagonal().reshape(self.d_out, self.d_in)

    def to_dense(self) -> Tensor:
        return self.matrix

    def restrict(self, rows: Tensor | None, cols: Tensor | None) -> DenseCurvature:
        r = torch.arange(self.d_out) if rows is None else rows.cpu()
        c = torch.arange(self.d_in) if cols is None else cols.cpu()
        idx = (r[:, None] * self.d_in + c[None, :]).flatten().to(self.matrix.device)
        return DenseCurvature(self.matrix[idx][:, idx], len(r), len(c))

    @property
    def nbytes(self) -> int:
        return self.matrix.numel() * self.matrix.element_size()
