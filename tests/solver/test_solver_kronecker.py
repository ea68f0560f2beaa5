"""Kronecker closed forms and the rank-2 eigenbasis against the dense generic formulas."""

from __future__ import annotations

import pytest
import torch
from solver_cases import (
    F64,
    close,
    constrained_optimum,
    dense_of,
    kron_curvature,
    random_mask,
    random_theta,
    solve,
)

from llm_surgeon.curvature import KroneckerCurvature
from llm_surgeon.errors import ConfigError, NumericalError
from llm_surgeon.solver import Damping, KroneckerSolver, UnsupportedCurvatureError

SHAPES = [(6, 5), (5, 6)]
CASES = [  # (rank, identity_g); "indefinite": rank 2 with an indefinite second term
    pytest.param(1, False, id="rank1"),
    pytest.param(1, True, id="rank1-identity-G"),
    pytest.param(2, False, id="rank2"),
    pytest.param(2, "indefinite", id="rank2-indefinite"),
]


def _solvers(d_out, d_in, rank, identity_g, seed=0):
    indefinite = identity_g == "indefinite"
    curvature = kron_curvature(d_out, d_in, rank, seed, identity_g=identity_g is True, indefinite=indefinite)
    if indefinite:
        assert torch.linalg.eigvalsh(curvature.factors[1][0]).min() < 0
        assert torch.linalg.eigvalsh(curvature.to_dense()).min() > 0
    return curvature, solve(curvature), solve(dense_of(curvature))


@pytest.mark.parametrize(("d_out", "d_in"), SHAPES)
@pytest.mark.parametrize(("rank", "identity_g"), CASES)
def test_costs_match_dense(d_out, d_in, rank, identity_g):
    _, kron, dense = _solvers(d_out, d_in, rank, identity_g)
    theta = random_theta(d_out, d_in)
    assert isinstance(kron, KroneckerSolver)
    assert close(kron.element_costs(theta), dense.element_costs(theta))
    assert close(kron.row_costs(theta), dense.row_costs(theta))
    assert close(kron.col_costs(theta), dense.col_costs(theta))
    delta = random_theta(d_out, d_in, seed=5)
    assert close(kron.quadratic(delta), dense.quadratic(delta))


def test_damping_matches_damped_dense_factors():
    d = Damping(g=0.1, a=0.3)
    curvature = kron_curvature(6, 5)
    (g, a), = curvature.factors
    damped = KroneckerCurvature(
        ((g + 0.1 * g.diagonal().mean() * torch.eye(6, dtype=F64),
          a + 0.3 * a.diagonal().mean() * torch.eye(5, dtype=F64)),), 6, 5,
    )
    theta = random_theta(6, 5)
    dense = solve(dense_of(damped))
    assert close(solve(curvature, d).element_costs(theta), dense.element_costs(theta))
    rows = torch.tensor([False, True, False, False, True, False])
    cols = torch.tensor([True, False, False, False, False])
    assert close(solve(curvature, d).remove_rows_cols(theta, rows, cols)[0],
                 dense.remove_rows_cols(theta, rows, cols)[0])


@pytest.mark.parametrize(("d_out", "d_in"), SHAPES)
@pytest.mark.parametrize("identity_g", [False, True])
@pytest.mark.parametrize(
    ("rows", "cols"),
    [([1, 4], []), ([], [0, 3]), ([0, 2], [1]), ([3], [0, 1, 2])],
    ids=["rows", "cols", "rows+cols", "one-row+cols"],
)
def test_row_col_updates_match_the_joint_dense_solve(d_out, d_in, identity_g, rows, cols):
    curvature, kron, dense = _solvers(d_out, d_in, 1, identity_g)
    theta = random_theta(d_out, d_in)
    r = torch.zeros(d_out, dtype=torch.bool)
    r[rows] = True
    c = torch.zeros(d_in, dtype=torch.bool)
    c[cols] = True
    removed = r[:, None] | c[None, :]
    new, cost = kron.remove_rows_cols(theta, r, c)
    ref, ref_cost = dense.remove(theta, removed)
    best, best_cost = constrained_optimum(curvature.to_dense(), theta, removed)
    assert torch.all(new[removed] == 0)
    assert close(new, ref) and close(new, best)
    assert close(cost, ref_cost) and close(cost, best_cost)
    assert close(kron.quadratic(new - theta), cost)
    # remove() recognises rows and columns and gives the same answer.
    again, again_cost = kron.remove(theta, removed)
    assert close(again, new) and close(again_cost, cost)


def test_single_row_and_column_costs_are_single_removals():
    _, kron, _ = _solvers(6, 5, 1, False)
    theta = random_theta(6, 5)
    rows, cols = kron.row_costs(theta), kron.col_costs(theta)
    for i in range(6):
        sel = torch.zeros(6, dtype=torch.bool)
        sel[i] = True
        assert close(rows[i], kron.remove_rows_cols(theta, sel, torch.zeros(5, dtype=torch.bool))[1])
    for j in range(5):
        sel = torch.zeros(5, dtype=torch.bool)
        sel[j] = True
        assert close(cols[j], kron.remove_rows_cols(theta, torch.zeros(6, dtype=torch.bool), sel)[1])


@pytest.mark.parametrize(("d_out", "d_in"), SHAPES)
@pytest.mark.parametrize(("rank", "identity_g"), CASES)
def test_element_update_all_at_once_matches_dense(d_out, d_in, rank, identity_g):
    curvature, kron, dense = _solvers(d_out, d_in, rank, identity_g)
    theta = random_theta(d_out, d_in)
    removed = random_mask(d_out, d_in, 0.35)
    new, cost = kron.remove_elements(theta, removed, chunk_size=None)
    best, best_cost = constrained_optimum(curvature.to_dense(), theta, removed)
    assert torch.all(new[removed] == 0)
    assert close(new, best) and close(cost, best_cost)
    assert close(kron.quadratic(new - theta), cost)
    assert close(kron.remove(theta, removed)[0], dense.remove(theta, removed)[0])


@pytest.mark.parametrize(("rank", "identity_g"), CASES)
@pytest.mark.parametrize("chunk", [1, 2, 3, 7, "row"])
@pytest.mark.parametrize("sweep", ["sequential", "gauss-seidel"])
def test_chunked_elements_match_the_dense_reference(rank, identity_g, chunk, sweep):
    _, kron, dense = _solvers(7, 6, rank, identity_g, seed=4)
    theta = random_theta(7, 6)
    removed = random_mask(7, 6, 0.45)
    if rank == 2 and sweep == "sequential":
        with pytest.raises(UnsupportedCurvatureError, match="sequential"):
            kron.remove_elements(theta, removed, chunk_size=chunk, sweep=sweep)
        return
    new, cost = kron.remove_elements(theta, removed, chunk_size=chunk, sweep=sweep)
    ref, ref_cost = dense.remove_elements(theta, removed, chunk_size=chunk, sweep=sweep)
    _, joint_cost = kron.remove_elements(theta, removed, chunk_size=None)
    assert torch.all(new[removed] == 0)
    assert close(new, ref) and close(cost, ref_cost)
    assert cost >= joint_cost * (1 - 1e-9)
    assert close(kron.quadratic(new - theta), cost)


def test_chunk_covering_everything_is_the_joint_removal():
    _, kron, _ = _solvers(6, 5, 1, False)
    theta = random_theta(6, 5)
    removed = random_mask(6, 5, 0.5)
    joint = kron.remove_elements(theta, removed, chunk_size=None)
    covering = kron.remove_elements(theta, removed, chunk_size=int(removed.sum()))
    assert close(joint[0], covering[0]) and close(joint[1], covering[1])


def test_no_update_only_zeroes():
    curvature, kron, _ = _solvers(6, 5, 1, False)
    theta = random_theta(6, 5)
    removed = random_mask(6, 5, 0.3)
    new, cost = kron.remove_elements(theta, removed, update=False)
    delta = torch.where(removed, -theta, torch.zeros_like(theta)).flatten()
    assert torch.equal(new[~removed], theta[~removed]) and torch.all(new[removed] == 0)
    assert close(cost, 0.5 * float(delta @ curvature.to_dense() @ delta))
    rows = torch.tensor([True, False, False, False, False, False])
    new, _ = kron.remove_rows_cols(theta, rows, torch.zeros(5, dtype=torch.bool), update=False)
    assert torch.all(new[0] == 0) and torch.equal(new[1:], theta[1:])


def test_least_squares_layer_reaches_the_direct_solve():
    """Squared error of a linear layer is exactly quadratic with F = I ⊗ X^T X."""
    gen = torch.Generator().manual_seed(7)
    n, d_out, d_w = 40, 4, 5
    x = torch.cat([torch.randn(n, d_w, generator=gen, dtype=F64), torch.ones(n, 1, dtype=F64)], 1)
    theta = torch.randn(d_out, d_w + 1, generator=gen, dtype=F64)
    y = x @ theta.T  # the dense layer's outputs are the targets
    curvature = KroneckerCurvature(((None, x.T @ x),), d_out, d_w + 1)
    solver = solve(curvature)
    removed = random_mask(d_out, d_w + 1, 0.4)
    removed[:, -1] = False  # the bias is never removed alone
    new, cost = solver.remove_elements(theta, removed, chunk_size="row")
    for r in range(d_out):
        keep = ~removed[r]
        sol = torch.linalg.lstsq(x[:, keep], y[:, r:r + 1]).solution.flatten()
        assert close(new[r, keep], sol)
    assert close(cost, 0.5 * float(((x @ new.T - y) ** 2).sum()))
    cols = torch.tensor([False, True, False, True, False, False])
    new, cost = solver.remove_rows_cols(theta, torch.zeros(d_out, dtype=torch.bool), cols)
    sol = torch.linalg.lstsq(x[:, ~cols], y).solution.T
    assert close(new[:, ~cols], sol) and torch.all(new[:, cols] == 0)
    assert close(cost, 0.5 * float(((x @ new.T - y) ** 2).sum()))


def test_rank3_small_falls_back_to_dense():
    curvature, kron, dense = _solvers(4, 3, 3, False)
    theta = random_theta(4, 3)
    removed = random_mask(4, 3, 0.4)
    assert close(kron.element_costs(theta), dense.element_costs(theta))
    assert close(kron.remove(theta, removed)[0], dense.remove(theta, removed)[0])


def test_unsupported_large_cases_raise():
    theta = random_theta(80, 60)
    rank3 = solve(kron_curvature(80, 60, rank=3))
    with pytest.raises(UnsupportedCurvatureError, match="rank 3"):
        rank3.element_costs(theta)
    rank2 = solve(kron_curvature(80, 60, rank=2))
    rows = torch.zeros(80, dtype=torch.bool)
    rows[3] = True
    with pytest.raises(UnsupportedCurvatureError, match="rank 1"):
        rank2.remove_rows_cols(theta, rows, torch.zeros(60, dtype=torch.bool))
    assert torch.isfinite(rank2.row_costs(theta)).all()  # costs still work
    assert isinstance(UnsupportedCurvatureError("x"), ConfigError)


def test_factorisations_are_cached():
    _, kron, _ = _solvers(6, 5, 1, False)
    assert kron.g_inv is kron.g_inv and kron.a_inv is kron.a_inv


def test_damping_escalates_and_is_recorded():
    g = torch.zeros(4, 4, dtype=F64)
    g[0, 0] = 1.0  # singular
    a = torch.eye(3, dtype=F64)
    curvature = KroneckerCurvature(((g, a),), 4, 3)
    solver = solve(curvature, Damping(g=0.0, a=0.0))
    costs = solver.element_costs(random_theta(4, 3))
    assert torch.isfinite(costs).all()
    assert solver.escalations >= 1
    stuck = KroneckerCurvature(((-torch.eye(4, dtype=F64), a),), 4, 3)
    with pytest.raises(NumericalError, match="output factor G"):
        solve(stuck, Damping(g=0.0, a=0.0, max_escalations=1)).element_costs(random_theta(4, 3))
    bad = torch.eye(4, dtype=F64)
    bad[1, 1] = float("nan")
    with pytest.raises(NumericalError, match="non-finite"):
        solve(KroneckerCurvature(((bad, a),), 4, 3)).row_costs(random_theta(4, 3))


def test_joint_removal_refuses_huge_systems(monkeypatch):
    import llm_surgeon.solver.elements as elements

    monkeypatch.setattr(elements, "MAX_JOINT", 5)
    _, kron, _ = _solvers(6, 5, 1, False)
    with pytest.raises(ConfigError, match="chunk size"):
        kron.remove_elements(random_theta(6, 5), random_mask(6, 5, 0.5), chunk_size=None)


@pytest.mark.parametrize(("rank", "identity_g"), CASES)
def test_inputs_are_not_modified(rank, identity_g):
    _, kron, _ = _solvers(6, 5, rank, identity_g)
    theta = random_theta(6, 5)
    saved = theta.clone()
    removed = random_mask(6, 5, 0.3)
    rows = torch.tensor([True, False, False, False, False, False])
    cols = torch.tensor([False, True, False, False, False])
    kron.remove_elements(theta, removed, chunk_size=2)
    kron.remove_elements(theta, removed, update=False)
    kron.remove(theta, removed)
    if rank == 1:
        kron.remove_rows_cols(theta, rows, cols)
    assert torch.equal(theta, saved)


def test_identity_curvature_only_zeroes():
    curvature = KroneckerCurvature(((None, None),), 4, 3)
    solver = solve(curvature)
    theta = random_theta(4, 3)
    removed = random_mask(4, 3, 0.5)
    new, cost = solver.remove_elements(theta, removed)
    assert torch.equal(new[~removed], theta[~removed]) and torch.all(new[removed] == 0)
    assert close(cost, 0.5 * float((theta[removed] ** 2).sum()))
    assert close(solver.element_costs(theta), 0.5 * theta**2)


def test_rank2_escalates_damping_until_positive_definite():
    gen = torch.Generator().manual_seed(0)
    g = torch.randn(5, 8, generator=gen, dtype=F64)
    a = torch.randn(4, 7, generator=gen, dtype=F64)
    g, a = g @ g.T / 8, a @ a.T / 7
    curvature = KroneckerCurvature(((g, a), (-1.5 * g, a)), 5, 4)
    assert torch.linalg.eigvalsh(curvature.to_dense()).max() < 0  # undamped F is negative definite
    solver = solve(curvature, Damping(g=0.01, a=0.01))
    costs = solver.element_costs(random_theta(5, 4))
    assert torch.isfinite(costs).all() and bool((costs > 0).all())
    assert solver.escalations >= 1
    with pytest.raises(NumericalError, match="not positive definite"):
        solve(curvature, Damping(g=0.0, a=0.0, max_escalations=0)).element_costs(random_theta(5, 4))
