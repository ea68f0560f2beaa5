"""Structured pruning of whole rows (outputs) and columns (inputs) of ``W``.

Each live row and each live input column is a candidate, costed alone on the live
sub-matrix (LLM Surgeon, van der Ouderaa et al., ICLR 2024; row cost
``theta_r^T A theta_r / (2 [G^-1]_rr)``, column cost ``theta_c^T G theta_c / (2 [A^-1]_cc)``
for ``F = G ⊗ A``). Removing a row also removes its bias; the bias column itself is
never a candidate. With ``update=full`` the selected rows are removed first with their
closed-form update, then the selected columns of the remaining rows.
"""

from __future__ import annotations

import attrs
import torch
from torch import Tensor

from llm_surgeon.pruning import CandidateSet, LiveView, Scope, Solvers, Structure, UpdateMode


@attrs.frozen
class RowColConfig:
    """Options of the ``row-col`` structure (none yet)."""


class RowColStructure(Structure):
    """Groups ``rows`` (``(d_out,)``) and ``cols`` (``(d_w,)``, bias column excluded).

    A module keeps ``(R - r) (C - c)`` weights when ``r`` rows and ``c`` columns are
    selected (already removed ones cost 0 and are counted).

    Args:
        config: the structure's options.
    """

    #: Measured on SmolLM2-135M (README, "Damping"): 0.1 on both factors beat 0.01.
    default_damping_g = 0.1
    default_damping_a = 0.1
    structured = True

    def __init__(self, config: RowColConfig | None = None):
        self.config = config or RowColConfig()

    @staticmethod
    def _w_cols(view: LiveView, has_bias: bool) -> Tensor:
        """Live columns of ``W`` (the bias column dropped)."""
        return view.cols[:-1] if has_bias else view.cols

    def candidates(self, scope: Scope, solvers: Solvers) -> CandidateSet:
        state = scope.state
        d_out, d_w = state.mask.shape
        has_bias = state.pm.has_bias
        view = LiveView.of(state.mask, has_bias)
        rows = torch.zeros(d_out, dtype=torch.float64)
        cols = torch.zeros(d_w, dtype=torch.float64)
        w_cols = self._w_cols(view, has_bias)
        if len(view.rows) and len(w_cols):
            solver = solvers.solver(state.pm.name, view)
            sub = view.restrict(state.theta())
            rows[view.rows] = solver.row_costs(sub).cpu()
            cols[w_cols] = solver.col_costs(sub).cpu()[: len(w_cols)]
        dead_rows = d_out - len(view.rows)
        dead_cols = d_w - len(w_cols)

        def remaining(counts: dict[str, int]) -> int:
            r = max(int(counts["rows"]), dead_rows)
            c = max(int(counts["cols"]), dead_cols)
            return (d_out - r) * (d_w - c)

        return CandidateSet(costs={"rows": rows, "cols": cols}, remaining=remaining)

    def apply(
        self,
        scope: Scope,
        solvers: Solvers,
        selected: dict[str, Tensor],
        update: UpdateMode,
    ) -> float:
        state = scope.state
        has_bias = state.pm.has_bias
        mask = state.mask.cpu()
        view = LiveView.of(mask, has_bias)
        live_rows = mask.any(dim=1)
        live_cols = mask.any(dim=0)
        rows = selected["rows"].cpu().to(torch.bool) & live_rows
        cols = selected["cols"].cpu().to(torch.bool) & live_cols
        if not bool(rows.any() or cols.any()):
            solvers.discard(state.pm.name)
            return 0.0
        solver = solvers.solver(state.pm.name, view, pop=True)
        theta = state.theta()
        cols_full = torch.cat([cols, torch.zeros(int(has_bias), dtype=torch.bool)])
        sub, cost = solver.remove_rows_cols(
            view.restrict(theta),
            rows[view.rows],
            cols_full[view.cols],
            update=UpdateMode(update) is UpdateMode.FULL,
        )
        new_mask = mask & ~rows[:, None] & ~cols[None, :]
        state.mask = new_mask.to(state.mask.device)
        state.set_theta(view.scatter(theta, sub))
        return float(cost)
