"""Optimal Brain Damage: diagonal curvature, zeroing is the exact optimum."""

from __future__ import annotations

import torch
from solver_cases import close, constrained_optimum, random_mask, random_theta

from llm_surgeon.curvature import DiagonalCurvature
from llm_surgeon.solver import DiagonalSolver


def test_costs_and_removal():
    values = torch.rand(4, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64) + 0.1
    solver = DiagonalSolver(DiagonalCurvature(values))
    theta = random_theta(4, 6)
    costs = solver.element_costs(theta)
    assert close(costs, 0.5 * theta**2 * values)
    assert close(solver.row_costs(theta), costs.sum(1))
    assert close(solver.col_costs(theta), costs.sum(0))
    removed = random_mask(4, 6, 0.4)
    for update in (True, False):
        new, cost = solver.remove_elements(theta, removed, update=update)
        best, best_cost = constrained_optimum(torch.diag(values.flatten()), theta, removed)
        assert close(new, best) and close(cost, best_cost)
        assert torch.equal(new[~removed], theta[~removed]) and torch.all(new[removed] == 0)
    rows = torch.tensor([True, False, False, True])
    cols = torch.zeros(6, dtype=torch.bool)
    new, cost = solver.remove_rows_cols(theta, rows, cols)
    assert close(cost, float(costs[rows].sum())) and torch.all(new[rows] == 0)


def test_damping_adds_mean():
    values = torch.tensor([[1.0, 3.0]], dtype=torch.float64)
    solver = DiagonalSolver(DiagonalCurvature(values), damping=0.5)
    assert close(solver.element_costs(torch.ones(1, 2, dtype=torch.float64)), 0.5 * (values + 1.0))
