"""Joint costs of sets of rows and of columns: every solver against the brute-force formula."""

from __future__ import annotations

import pytest
import torch
from solver_cases import (
    F64,
    close,
    constrained_optimum,
    dense_of,
    kron_curvature,
    random_theta,
    solve,
)

from llm_surgeon.curvature import DiagonalCurvature
from llm_surgeon.solver import Damping

SETS = [[0, 3], [1], [], [2, 4, 5]]


def _brute(f: torch.Tensor, theta: torch.Tensor, removed: torch.Tensor) -> float:
    """``1/2 (E_K theta)^T (E_K F^-1 E_K^T)^-1 (E_K theta)``, read off the KKT optimum."""
    return constrained_optimum(f, theta, removed)[1]


def _row_sets(n_rows: int, n_cols: int, sets: list[list[int]], rows: bool) -> list[torch.Tensor]:
    masks = []
    for s in sets:
        m = torch.zeros(n_rows, n_cols, dtype=torch.bool)
        if rows:
            m[s] = True
        else:
            m[:, s] = True
        masks.append(m)
    return masks


@pytest.mark.parametrize("identity_g", [False, True])
@pytest.mark.parametrize("rank", [1, 2])
def test_kronecker_set_costs_match_the_dense_formula(rank, identity_g):
    curvature = kron_curvature(6, 7, rank=rank, seed=3, identity_g=identity_g)
    theta = random_theta(6, 7)
    f = curvature.to_dense()
    solver = solve(curvature)
    index = [torch.tensor(s, dtype=torch.long) for s in SETS]
    rows = solver.row_set_costs(theta, index)
    cols = solver.col_set_costs(theta, index)
    assert rows.dtype == F64 and rows.shape == (len(SETS),)
    expected_rows = [_brute(f, theta, m) for m in _row_sets(6, 7, SETS, rows=True)]
    expected_cols = [_brute(f, theta, m) for m in _row_sets(6, 7, SETS, rows=False)]
    assert close(rows, expected_rows) and close(cols, expected_cols)
    assert rows[2] == 0 and cols[2] == 0
    # One-element sets are the single row and column costs.
    assert close(rows[1], solver.row_costs(theta)[1]) and close(cols[1], solver.col_costs(theta)[1])


def test_kronecker_set_costs_use_the_damped_factors():
    curvature = kron_curvature(5, 6, seed=4)
    theta = random_theta(5, 6, seed=5)
    damping = Damping(g=0.3, a=0.2)
    solver = solve(curvature, damping)
    g, a = curvature.factors[0]
    g = g + 0.3 * g.diagonal().mean() * torch.eye(5, dtype=F64)
    a = a + 0.2 * a.diagonal().mean() * torch.eye(6, dtype=F64)
    f = torch.kron(g, a)
    index = [torch.tensor(s, dtype=torch.long) for s in ([0, 2], [1, 3, 4])]
    expected = [_brute(f, theta, m) for m in _row_sets(5, 6, [[0, 2], [1, 3, 4]], rows=True)]
    assert close(solver.row_set_costs(theta, index), expected)


def test_dense_and_diagonal_set_costs_match_the_formula():
    curvature = kron_curvature(5, 4, seed=6)
    theta = random_theta(5, 4, seed=7)
    index = [torch.tensor(s, dtype=torch.long) for s in ([0, 1], [3], [])]
    dense = dense_of(curvature)
    expected = [_brute(dense.matrix, theta, m) for m in _row_sets(5, 4, [[0, 1], [3], []], rows=True)]
    assert close(solve(dense).row_set_costs(theta, index), expected)
    diag = DiagonalCurvature(torch.rand(5, 4, generator=torch.Generator().manual_seed(8), dtype=F64) + 0.1)
    f = torch.diag(diag.values.flatten())
    expected = [_brute(f, theta, m) for m in _row_sets(5, 4, [[0, 1], [3], []], rows=False)]
    assert close(solve(diag).col_set_costs(theta, index), expected)
