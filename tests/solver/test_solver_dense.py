"""The dense reference solver against a brute-force KKT solve."""

from __future__ import annotations

import pytest
import torch
from solver_cases import F64, close, constrained_optimum, random_mask, random_theta, spd

from llm_surgeon.curvature import DenseCurvature
from llm_surgeon.solver import DenseSolver

D_OUT, D_IN = 4, 5


@pytest.fixture
def problem():
    gen = torch.Generator().manual_seed(3)
    f = spd(D_OUT * D_IN, gen)
    return f, DenseSolver(DenseCurvature(f, D_OUT, D_IN)), random_theta(D_OUT, D_IN)


def test_remove_is_the_constrained_optimum(problem):
    f, solver, theta = problem
    removed = random_mask(D_OUT, D_IN, 0.4)
    new, cost = solver.remove(theta, removed)
    best, best_cost = constrained_optimum(f, theta, removed)
    assert torch.all(new[removed] == 0)
    assert close(new, best)
    assert close(cost, best_cost)
    assert close(solver.quadratic(new - theta), cost)


def test_single_costs_are_single_removals(problem):
    _, solver, theta = problem
    elements = solver.element_costs(theta)
    rows, cols = solver.row_costs(theta), solver.col_costs(theta)
    for i in range(D_OUT):
        mask = torch.zeros(D_OUT, D_IN, dtype=torch.bool)
        mask[i] = True
        assert close(rows[i], solver.remove(theta, mask)[1])
        mask = torch.zeros(D_OUT, D_IN, dtype=torch.bool)
        mask[i, i] = True
        assert close(elements[i, i], solver.remove(theta, mask)[1])
    for j in range(D_IN):
        mask = torch.zeros(D_OUT, D_IN, dtype=torch.bool)
        mask[:, j] = True
        assert close(cols[j], solver.remove(theta, mask)[1])


def test_chunks_approximate_the_joint_removal(problem):
    _, solver, theta = problem
    removed = random_mask(D_OUT, D_IN, 0.5)
    joint, joint_cost = solver.remove(theta, removed)
    for chunk in (1, 2, "row"):
        new, cost = solver.remove_elements(theta, removed, chunk_size=chunk)
        assert torch.all(new[removed] == 0)
        assert cost >= joint_cost * (1 - 1e-9)
        assert close(solver.quadratic(new - theta), cost)
    new, cost = solver.remove_elements(theta, removed, chunk_size=D_OUT * D_IN)
    assert close(new, joint) and close(cost, joint_cost)


def test_damping_is_relative_to_the_mean_diagonal():
    gen = torch.Generator().manual_seed(0)
    f = spd(6, gen)
    theta = random_theta(2, 3)
    damped = DenseSolver(DenseCurvature(f, 2, 3), damping=0.5)
    explicit = DenseSolver(DenseCurvature(f + 0.5 * f.diagonal().mean() * torch.eye(6, dtype=F64), 2, 3))
    assert close(damped.element_costs(theta), explicit.element_costs(theta))
