"""Optimal Brain Damage: a diagonal curvature ``F = diag(D)``.

With a diagonal ``F`` the removal of a set ``K`` decouples: ``[F^-1]_ii = 1/D_i`` and
``E_K F^-1 E_K^T`` is diagonal, so the cost is ``sum_{i in K} theta_i^2 D_i / 2`` and the
optimal update ``-F^-1 E_K^T (E_K F^-1 E_K^T)^-1 E_K theta`` only touches the removed
weights (it sets them to zero). ``update=True`` is therefore accepted and exact: it
is the same as zeroing.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from llm_surgeon.curvature.types import DiagonalCurvature
from llm_surgeon.solver.base import (
    DEFAULT_CHUNK_SIZE,
    ChunkSize,
    CurvatureSolver,
    Sweep,
    as_mask,
    check_sweep,
)


class DiagonalSolver(CurvatureSolver):
    """Costs ``theta^2 D / 2`` and removal by zeroing (the exact optimum for diagonal ``F``).

    Optional damping is added relative to the mean of ``D``: ``D + damping * mean(D)``
    (OBD baselines use none: costs need no inverse).

    Args:
        curvature: the diagonal curvature, ``values: (d_out, d_in)``.
        damping: relative damping of ``D``.
    """

    def __init__(self, curvature: DiagonalCurvature, damping: float = 0.0):
        values = curvature.values.detach().to(torch.float64)
        if damping:
            values = values + damping * values.mean()
        self.values = values
        self.d_out, self.d_in = values.shape

    def _local(self, theta: Tensor) -> Tensor:
        return self._theta(theta).to(self.values.device)

    def element_costs(self, theta: Tensor) -> Tensor:
        t = self._local(theta)
        return (0.5 * t * t * self.values).to(theta.device)

    def row_costs(self, theta: Tensor) -> Tensor:
        return self.element_costs(theta).sum(dim=1)

    def col_costs(self, theta: Tensor) -> Tensor:
        return self.element_costs(theta).sum(dim=0)

    def row_set_costs(self, theta: Tensor, sets: Sequence[Tensor]) -> Tensor:
        rows = self.row_costs(theta).cpu()
        return torch.stack([rows[s.cpu()].sum() for s in sets]) if len(sets) else rows[:0]

    def col_set_costs(self, theta: Tensor, sets: Sequence[Tensor]) -> Tensor:
        cols = self.col_costs(theta).cpu()
        return torch.stack([cols[s.cpu()].sum() for s in sets]) if len(sets) else cols[:0]

    def quadratic(self, delta: Tensor) -> float:
        d = self._local(delta)
        return 0.5 * float((d * d * self.values).sum())

    def remove(self, theta: Tensor, removed: Tensor) -> tuple[Tensor, float]:
        return self.zero(theta, removed)

    def remove_rows_cols(
        self, theta: Tensor, rows: Tensor, cols: Tensor, update: bool = True
    ) -> tuple[Tensor, float]:
        rows = as_mask(rows, self.d_out, "rows")
        cols = as_mask(cols, self.d_in, "cols")
        return self.zero(theta, rows[:, None] | cols[None, :])

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
        return self.zero(theta, removed)
