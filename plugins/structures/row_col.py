"""Structured pruning of whole rows (outputs) and columns (inputs) of ``W``.

Each live row and each live input column is a candidate, costed alone on the live
sub-matrix (LLM Surgeon, van der Ouderaa et al., ICLR 2024; row cost
``theta_r^T A theta_r / (2 [G^-1]_rr)``, column cost ``theta_c^T G theta_c / (2 [A^-1]_cc)``
for ``F = G ⊗ A``). Removing a row also removes its bias; the bias column itself is
never a candidate. With ``update=full`` the selected rows are removed first with their
closed-form update, then the selected columns of the remaining rows. After every shot,
the rows and columns that the removals left functionally dead are removed as well
(:mod:`llm_surgeon.pruning.dead`; ``propagate=False`` turns this off), and the shot's
threshold counts them toward its target.
"""

from __future__ import annotations

import attrs
import torch
from torch import Tensor

from llm_surgeon.pruning import (
    CandidateSet,
    LiveView,
    ModuleState,
    Scope,
    Solvers,
    Structure,
    UpdateMode,
)

#: Values of the ``size`` option of structures: what shot targets count.
SIZE_MEASURES = ("weights", "real")


@attrs.frozen
class RowColConfig:
    """Options of the ``row-col`` structure.

    Attributes:
        propagate: remove dead structures after every shot (MLP neurons, value/output
            and key/query rows left without a reader or a writer); exact, on by default.
        size: what the targets count: ``weights`` (alive prunable weights) or ``real``
            (the prunable weights of a compact export: whole neurons and heads dropped,
            scattered rows and columns stored with index vectors where that is smaller).
    """

    propagate: bool = attrs.field(default=True, validator=attrs.validators.instance_of(bool))
    size: str = attrs.field(default="weights", validator=attrs.validators.in_(SIZE_MEASURES))


def remove_rows_cols(state: ModuleState, solvers: Solvers, rows: Tensor, cols: Tensor,
                     update: UpdateMode) -> float:
    """Remove rows ``(d_out,)`` and columns ``(d_w,)`` (bool) of a module on its live sub-matrix.

    Rows and columns already dead are ignored; the module's weights and mask are
    updated in place (a removed row's bias is zeroed with it).

    Returns:
        The predicted increase of the quadratic loss model.
    """
    has_bias = state.pm.has_bias
    mask = state.mask.cpu()
    view = LiveView.of(mask, has_bias)
    rows = rows.cpu().to(torch.bool) & mask.any(dim=1)
    cols = cols.cpu().to(torch.bool) & mask.any(dim=0)
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
    state.mask = (mask & ~rows[:, None] & ~cols[None, :]).to(state.mask.device)
    state.set_theta(view.scatter(theta, sub))
    return float(cost)


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

    @property
    def propagates(self) -> bool:
        return self.config.propagate

    @property
    def size_measure(self) -> str:
        return self.config.size

    def masks_after(self, scope: Scope, selected: dict[str, Tensor]) -> list[Tensor]:
        mask = scope.state.mask
        rows = selected["rows"].cpu().to(torch.bool)
        cols = selected["cols"].cpu().to(torch.bool)
        view = LiveView.of(mask, False)
        if not bool(rows[view.rows].any() or cols[view.cols].any()):
            return [mask]  # only dead lines selected: nothing changes
        out = mask.cpu().clone()
        out[rows] = False
        out[:, cols] = False
        return [out]

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
        return remove_rows_cols(scope.state, solvers, selected["rows"], selected["cols"], update)
