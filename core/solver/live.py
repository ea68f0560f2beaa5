"""The live sub-matrix of a partly pruned layer, and a small cache of its solvers.

Rows and columns that are already removed stay removed: they are excluded from all
later algebra by restricting ``theta`` and the curvature to the live rows and columns
(the bias column is always kept) before anything is factorised, and results are
scattered back to the full shape.
"""

from __future__ import annotations

import os
import weakref
from collections import OrderedDict

import attrs
import torch
from torch import Tensor

from llm_surgeon.curvature import Curvature
from llm_surgeon.solver.base import CurvatureSolver


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
        device = _device_of(curvature)
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


def _device_of(curvature: Curvature) -> torch.device:
    """The device of a curvature's tensors (index tensors must live there)."""
    for name in ("matrix", "values"):
        t = getattr(curvature, name, None)
        if isinstance(t, Tensor):
            return t.device
    factors = getattr(curvature, "factors", None)
    if factors is not None:
        for pair in factors:
            for m in pair:
                if isinstance(m, Tensor):
                    return m.device
        return torch.device("cpu")
    return curvature.diag().device


class SolverCache:
    """Solvers of live sub-matrices, kept between a shot's ``candidates`` and ``apply``.

    Entries are keyed by the curvature object (held weakly) and checked against the live
    view. A solver is inserted only while the cache holds less than ``max_bytes`` of
    factorisations (first come, first kept, so that a pass over all modules followed by
    a second pass still finds the first ones); :meth:`pop` removes an entry for its last use.

    The default budget is 0: nothing is kept. Costs need only Cholesky factors and the
    diagonals of the inverses, so factorising again in ``apply`` costs a few
    ``n^3 / 3`` per module, while keeping float64 factorisations of every module of a
    model between the two phases would take several times the curvature's own memory.

    Args:
        max_bytes: memory budget of cached solvers (estimated from their layer shapes);
            default ``$LLM_SURGEON_SOLVER_CACHE_MB`` MiB, else 0.
    """

    def __init__(self, max_bytes: int | None = None):
        if max_bytes is None:
            max_bytes = int(os.environ.get("LLM_SURGEON_SOLVER_CACHE_MB", "0")) * 2**20
        self.max_bytes = max_bytes
        self._entries: OrderedDict[int, tuple[weakref.ref, LiveView, CurvatureSolver, int]] = OrderedDict()
        self._bytes = 0

    def _lookup(self, curvature: Curvature, view: LiveView, pop: bool) -> CurvatureSolver | None:
        key = id(curvature)
        entry = self._entries.get(key)
        if entry is None:
            return None
        ref, cached_view, solver, nbytes = entry
        if ref() is not curvature or not cached_view.same(view):
            self._drop(key)
            return None
        if pop:
            self._drop(key)
        return solver

    def _drop(self, key: int, ref: weakref.ref | None = None) -> None:
        entry = self._entries.get(key)
        if entry is not None and (ref is None or entry[0] is ref):
            del self._entries[key]
            self._bytes -= entry[3]

    def get(self, curvature: Curvature, view: LiveView, *, pop: bool = False) -> CurvatureSolver:
        """The solver of ``view``'s sub-matrix of ``curvature`` (cached or new).

        Args:
            curvature: the full curvature of the module.
            view: its live rows and columns.
            pop: forget the entry (the last use of this shot).
        """
        solver = self._lookup(curvature, view, pop)
        if solver is not None:
            return solver
        solver = view.curvature(curvature).solver()
        if not pop:
            nbytes = 8 * 3 * (len(view.rows) ** 2 + len(view.cols) ** 2)  # M, M^-1, chol(M)
            if self._bytes + nbytes <= self.max_bytes:
                key = id(curvature)
                ref = weakref.ref(curvature, lambda r, k=key: self._drop(k, r))
                self._entries[key] = (ref, view, solver, nbytes)
                self._bytes += nbytes
        return solver

    def discard(self, curvature: Curvature) -> None:
        """Forget the solver of ``curvature``, if cached."""
        entry = self._entries.get(id(curvature))
        if entry is not None and entry[0]() is curvature:
            self._drop(id(curvature))

    def clear(self) -> None:
        """Forget every cached solver."""
        self._entries.clear()
        self._bytes = 0
