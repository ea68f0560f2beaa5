"""Costs and sizes of the candidates of a coupled dimension, member by member.

The curvature is block-diagonal across modules, so removing candidate ``i`` of a
coupling costs the sum over its members of the joint cost of the member's rows (or
columns) of that candidate on the module's live sub-matrix:
``1/2 tr(W_R^T (G^-1_RR)^-1 W_R A)`` for rows ``R`` and ``1/2 tr(G W_C (A^-1_CC)^-1 W_C^T)``
for columns ``C`` under ``F = G ⊗ A`` (the solver's ``row_set_costs`` / ``col_set_costs``;
for one row or column the familiar ``theta_r^T A theta_r / (2 [G^-1]_rr)``).
With ``readers_only`` only the column members count: the modules that read the dimension
(``down``, ``o``, ``fc2``). Removing those columns already silences the candidate, so its
row members (``gate``/``up``, ``q``/``k``/``v``, ``fc1``) are dead afterwards and cost nothing.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from llm_surgeon.pruning import Coupling, LiveView, Member, ModuleState, Solvers


def owned(coupling: Coupling, states: Mapping[str, ModuleState]) -> Tensor:
    """Alive weights of each candidate, summed over the members, ``(size,)`` long."""
    total = torch.zeros(coupling.size, dtype=torch.long)
    for m in coupling.members:
        mask = states[m.module].mask.cpu()
        per_line = torch.count_nonzero(mask, dim=1 if m.axis == "row" else 0)
        total += per_line[m.index(coupling.size)].sum(dim=1)
    return total


def _member_costs(member: Member, size: int, state: ModuleState, solvers: Solvers) -> Tensor:
    """Cost of removing each candidate's rows or columns of one module, ``(size,)``."""
    costs = torch.zeros(size, dtype=torch.float64)
    view = LiveView.of(state.mask, state.pm.has_bias)
    n_w = state.mask.shape[1]
    w_cols = view.cols[:-1] if state.pm.has_bias else view.cols
    if not len(view.rows) or not len(w_cols):
        return costs
    live = view.rows if member.axis == "row" else w_cols
    local = torch.full((state.mask.shape[0] if member.axis == "row" else n_w,), -1, dtype=torch.long)
    local[live] = torch.arange(len(live))
    index = local[member.index(size)]  # (size, width), -1 where dead
    solver = solvers.solver(state.pm.name, view)
    sub = view.restrict(state.theta())
    if member.width == 1:
        per_line = (solver.row_costs(sub) if member.axis == "row" else solver.col_costs(sub)).cpu()
        alive = index[:, 0] >= 0
        costs[alive] = per_line[index[alive, 0]]
        return costs
    sets = [row[row >= 0] for row in index]
    if member.axis == "row":
        return solver.row_set_costs(sub, sets).cpu()
    return solver.col_set_costs(sub, sets).cpu()


def dimension_costs(coupling: Coupling, states: Mapping[str, ModuleState], solvers: Solvers,
                    *, readers_only: bool = False) -> Tensor:
    """Cost of removing each candidate of ``coupling`` alone, ``(size,)`` float64.

    The sum over the members (with ``readers_only``, over the column members only) of the
    joint cost of the candidate's rows or columns of each module (dead rows and columns
    excluded; a dead candidate costs 0).
    """
    total = torch.zeros(coupling.size, dtype=torch.float64)
    for m in coupling.members:
        if readers_only and m.axis == "row":
            continue
        total += _member_costs(m, coupling.size, states[m.module], solvers)
    return total


def removal_lines(coupling: Coupling, removed: Tensor) -> dict[str, tuple[Tensor | None, Tensor | None]]:
    """Rows and columns of each member module that removing candidates ``removed`` takes.

    Args:
        coupling: the coupling.
        removed: ``(size,)`` bool over its candidates.

    Returns:
        module -> ``(rows, cols)`` index tensors (``None`` for the other axis).
    """
    out: dict[str, tuple[Tensor | None, Tensor | None]] = {}
    for m in coupling.members:
        lines = m.index(coupling.size)[removed].flatten()
        rows, cols = out.get(m.module, (None, None))
        if m.axis == "row":
            rows = lines if rows is None else torch.cat([rows, lines])
        else:
            cols = lines if cols is None else torch.cat([cols, lines])
        out[m.module] = (rows, cols)
    return out
