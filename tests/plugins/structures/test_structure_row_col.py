"""The row-col structure: costs on the live sub-matrix, counts, bias, exact updates."""

from __future__ import annotations

import pytest
import torch
from structure_cases import NO_DAMPING, close, live_oracle, make_layer, on

from llm_surgeon.plugins.structures.row_col import RowColStructure
from llm_surgeon.pruning import UpdateMode
from llm_surgeon.solver import solver_for


def _select(n: int, idx: list[int]) -> torch.Tensor:
    sel = torch.zeros(n, dtype=torch.bool)
    sel[idx] = True
    return sel


@pytest.mark.parametrize("bias", [False, True])
def test_two_shots_match_the_dense_oracle(bias):
    state, curvature = make_layer(6, 5, bias)
    structure = RowColStructure()
    d_in = 5 + int(bias)
    for rows, cols in (([1, 4], [2]), ([0], [0, 3])):
        cands = structure.candidates(*on(state, curvature))
        assert set(cands.costs) == {"rows", "cols"}
        assert cands.costs["rows"].shape == (6,) and cands.costs["cols"].shape == (5,)
        # Already removed rows and columns cost nothing.
        assert torch.all(cands.costs["rows"][~state.mask.any(1)] == 0)
        assert torch.all(cands.costs["cols"][~state.mask.any(0)] == 0)
        dead_rows = (~state.mask.any(1)).nonzero().flatten().tolist()
        dead_cols = (~state.mask.any(0)).nonzero().flatten().tolist()
        sel_rows, sel_cols = _select(6, rows + dead_rows), _select(5, cols + dead_cols)
        theta = state.theta()
        removed = torch.zeros(6, d_in, dtype=torch.bool)
        removed[rows] = True
        removed[:, cols] = True
        expected, expected_cost = live_oracle(state, curvature, theta, removed)
        cost = structure.apply(*on(state, curvature), {"rows": sel_rows, "cols": sel_cols}, UpdateMode.FULL)
        assert close(cost, expected_cost)
        assert close(state.theta(), expected)
        assert state.remaining == cands.remaining({"rows": int(sel_rows.sum()), "cols": int(sel_cols.sum())})
        w = state.pm.module.weight
        assert torch.all(w[sel_rows] == 0) and torch.all(w[:, sel_cols] == 0)
        if bias:
            assert torch.all(state.pm.module.bias[sel_rows] == 0)
            assert torch.all(state.pm.module.bias[~sel_rows] != 0)
    assert state.remaining == (6 - 3) * (5 - 3)


def test_costs_are_the_solver_costs_on_a_dense_layer():
    state, curvature = make_layer(6, 5, bias=True)
    cands = RowColStructure().candidates(*on(state, curvature))
    solver = solver_for(curvature, NO_DAMPING)
    theta = state.theta()
    assert close(cands.costs["rows"], solver.row_costs(theta))
    assert close(cands.costs["cols"], solver.col_costs(theta)[:5])  # the bias column is no candidate


def test_remaining_counts_dead_candidates():
    state, curvature = make_layer(6, 5, bias=False)
    structure = RowColStructure()
    structure.apply(*on(state, curvature), {"rows": _select(6, [0]), "cols": _select(5, [1])}, UpdateMode.FULL)
    cands = structure.candidates(*on(state, curvature))
    assert cands.remaining({"rows": 0, "cols": 0}) == 5 * 4 == state.remaining
    assert cands.remaining({"rows": 2, "cols": 1}) == 4 * 4


def test_no_update_only_zeroes():
    state, curvature = make_layer(6, 5, bias=True)
    structure = RowColStructure()
    theta = state.theta()
    structure.candidates(*on(state, curvature))
    rows, cols = _select(6, [2]), _select(5, [4])
    cost = structure.apply(*on(state, curvature), {"rows": rows, "cols": cols}, UpdateMode.NONE)
    new = state.theta()
    keep = ~rows[:, None] & ~torch.cat([cols, torch.tensor([False])])[None, :]
    assert torch.equal(new[keep], theta[keep]) and torch.all(new[~keep] == 0)
    delta = (new - theta).flatten()
    assert close(cost, 0.5 * float(delta @ curvature.to_dense() @ delta))
