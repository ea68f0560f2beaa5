"""The live sub-matrix of a partly pruned layer, and the solvers of one shot.

Rows and columns that are already removed stay removed: they are excluded from all
later algebra by restricting ``theta`` and the curvature to the live rows and columns
(the bias column is always kept) before anything is factorised, and results are
scattered back to the full shape.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import partial

import attrs
import torch
from torch import Tensor

from llm_surgeon.curvature.types import Curvature
from llm_surgeon.solver.base import CurvatureSolver
from llm_surgeon.solver.dispatch import solver_for
from llm_surgeon.solver.factor import Damping


@attrs.frozen
class LiveView:
    """Indices of the live rows and columns of a ``(d_out, d_in)`` weight layout.

    Attributes:
        rows: ``(R,)`` long, rows with at least one alive weight.
        cols: ``(C,)`` long, columns with at least one alive weight, plus the bias column.
        d_out: rows of the full layout.
        d_in: columns of the full layout (bias column included).
    """

    rows: Tensor
    cols: Tensor
    d_out: int
    d_in: int

    @classmethod
    def of(cls, mask: Tensor, has_bias: bool) -> LiveView:
        """The live view of a weight mask ``(d_out, d_w)`` (bool, ``True`` = alive)."""
        mask = mask.cpu()
        rows = mask.any(dim=1).nonzero().flatten()
        cols = mask.any(dim=0).nonzero().flatten()
        d_w = mask.shape[1]
        if has_bias:
            cols = torch.cat([cols, torch.tensor([d_w])])
        return cls(rows, cols, mask.shape[0], d_w + int(has_bias))

    @property
    def full(self) -> bool:
        """Whether nothing is restricted."""
        return len(self.rows) == self.d_out and len(self.cols) == self.d_in

    def restrict(self, x: Tensor) -> Tensor:
        """``x[rows][:, cols]`` of a ``(d_out, d_in)`` tensor."""
        if self.full:
            return x
        return x.index_select(0, self.rows.to(x.device)).index_select(1, self.cols.to(x.device))

    def curvature(self, curvature: Curvature) -> Curvature:
        """The curvature of the live sub-matrix.

        Always a new object (sharing the tensors when nothing is restricted), so that a
        cached solver does not keep the caller's curvature alive.
        """
        rows = None if len(self.rows) == self.d_out else self.rows
        cols = None if len(self.cols) == self.d_in else self.cols
        device = curvature.device
        return curvature.restrict(
            None if rows is None else rows.to(device), None if cols is None else cols.to(device)
        )

    def scatter(self, full: Tensor, sub: Tensor) -> Tensor:
        """A copy of ``full`` with the live sub-matrix replaced by ``sub``."""
        if self.full:
            return sub.to(full.dtype)
        out = full.clone()
        r = self.rows.to(full.device)
        c = self.cols.to(full.device)
        out[r[:, None], c[None, :]] = sub.to(device=full.device, dtype=full.dtype)
        return out

    def same(self, other: LiveView) -> bool:
        """Whether two views select the same rows and columns."""
        return torch.equal(self.rows, other.rows) and torch.equal(self.cols, other.cols)


class Solvers:
    """The solvers of one shot: each module's curvature, the damping, a cache, escalations.

    Structures get their solvers here (:meth:`solver`), on the live sub-matrix of a
    module, so that damping is chosen once per shot by the method and every damping
    escalation is recorded per module (:attr:`escalations`) instead of on the curvature.

    A solver is kept between a shot's ``candidates`` and ``apply`` only while the cache
    holds less than ``max_bytes`` of factorisations (first come, first kept), and is
    dropped by its last use (``pop=True``). The default budget is 0: nothing is kept.
    Costs need only Cholesky factors and the diagonals of the inverses, so factorising
    again in ``apply`` costs a few ``n^3 / 3`` per module, while keeping float64
    factorisations of every module of a model would take several times the curvature's
    own memory.

    Args:
        curvatures: module name -> full-size curvature.
        damping: relative damping of every factorisation.
        max_bytes: cache budget (estimated from the layer shapes); default
            ``$LLM_SURGEON_SOLVER_CACHE_MB`` MiB, else 0.
    """

    def __init__(self, curvatures: Mapping[str, Curvature], damping: Damping,
                 max_bytes: int | None = None):
        if max_bytes is None:
            max_bytes = int(os.environ.get("LLM_SURGEON_SOLVER_CACHE_MB", "0")) * 2**20
        self.curvatures = curvatures
        self.damping = damping
        self.max_bytes = max_bytes
        self.escalations: dict[str, int] = {}
        self._entries: dict[str, tuple[LiveView, CurvatureSolver, int]] = {}
        self._bytes = 0

    def curvature(self, name: str) -> Curvature:
        """The full-size curvature of module ``name``."""
        return self.curvatures[name]

    def solver(self, name: str, view: LiveView, *, pop: bool = False) -> CurvatureSolver:
        """The solver of ``view``'s sub-matrix of module ``name``'s curvature (cached or new).

        Args:
            name: the module.
            view: its live rows and columns.
            pop: forget the cached entry (the last use in this shot).
        """
        entry = self._entries.get(name)
        if entry is not None and entry[0].same(view):
            if pop:
                self.discard(name)
            return entry[1]
        self.discard(name)
        solver = solver_for(view.curvature(self.curvatures[name]), self.damping)
        solver.on_escalation = partial(self._record, name)
        nbytes = 8 * 3 * (len(view.rows) ** 2 + len(view.cols) ** 2)  # M, M^-1, chol(M)
        if not pop and self._bytes + nbytes <= self.max_bytes:
            self._entries[name] = (view, solver, nbytes)
            self._bytes += nbytes
        return solver

    def _record(self, name: str, count: int) -> None:
        self.escalations[name] = max(self.escalations.get(name, 0), count)

    def discard(self, name: str) -> None:
        """Forget the cached solver of module ``name``, if any."""
        entry = self._entries.pop(name, None)
        if entry is not None:
            self._bytes -= entry[2]
