"""Mixed-precision chunk solves and inverse pieces read from Cholesky factors, against float64."""

from __future__ import annotations

import pytest
import torch
from solver_cases import (
    F64,
    close,
    constrained_optimum,
    kron_curvature,
    random_mask,
    random_theta,
    solve,
    spd,
)

from llm_surgeon.solver import elements
from llm_surgeon.solver import factor as factor_module
from llm_surgeon.solver.factor import damped_cholesky


def _spd_with_condition(n: int, cond: float, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=F64))
    return (q * torch.logspace(0, -torch.log10(torch.tensor(cond)).item(), n, dtype=F64)) @ q.T


def test_inverse_diagonal_and_rows_match_the_inverse():
    m = spd(30, torch.Generator().manual_seed(0))
    factor = damped_cholesky(m, 0.05)
    inv = torch.linalg.inv(factor.matrix)
    assert close(factor.inverse_diagonal(), inv.diagonal(), rel=1e-12)
    idx = torch.tensor([7, 0, 29, 3])
    rows = factor.inverse_rows(idx)
    assert rows.is_contiguous() and close(rows, inv[idx], rel=1e-12)


@pytest.mark.parametrize("cond", [1e2, 1e5])
def test_mixed_solve_reaches_float64_accuracy(cond, monkeypatch):
    calls = []
    monkeypatch.setattr(elements, "solve_spd", lambda *a, **k: calls.append(1))  # must not fall back
    m = _spd_with_condition(200, cond)
    b = torch.randn(200, generator=torch.Generator().manual_seed(1), dtype=F64)
    x = elements.solve_spd_mixed(m, b)
    direct = torch.linalg.solve(m, b)
    assert not calls
    bound = elements.MIXED_TOL * float(m.diagonal().max()) * float(x.abs().sum())
    assert float((b - m @ x).abs().max()) <= bound
    assert close(x, direct, rel=cond * 1e-11)


def test_mixed_solve_falls_back_to_float64_when_float32_cannot_do_it(monkeypatch):
    calls = []
    real = elements.solve_spd
    monkeypatch.setattr(elements, "solve_spd", lambda m, b, what="": calls.append(1) or real(m, b, what))
    m = _spd_with_condition(150, 1e12)  # far beyond float32: its Cholesky fails or refinement stalls
    b = torch.randn(150, generator=torch.Generator().manual_seed(2), dtype=F64)
    x = elements.solve_spd_mixed(m, b)
    assert calls == [1]
    assert torch.equal(x, real(m, b))


@pytest.mark.parametrize(("shape", "chunk"), [((3, 220), None), ((3, 700), "row"), ((6, 400), 700)])
@pytest.mark.parametrize("sweep", ["sequential", "gauss-seidel"])
def test_large_chunks_take_the_mixed_path_and_match_the_joint_solve(shape, chunk, sweep, monkeypatch):
    # Chunks of at least MIXED_MIN weights (one joint system, single-row and multi-row
    # chunks) are solved in mixed precision; the results must equal the float64 reference.
    curvature = kron_curvature(*shape, seed=5)
    theta = random_theta(*shape)
    removed = random_mask(*shape, 0.5)
    mixed_min = elements.MIXED_MIN
    used = []
    real = elements.solve_spd_mixed
    monkeypatch.setattr(elements, "solve_spd_mixed", lambda m, b: used.append(len(m)) or real(m, b))
    new, cost = solve(curvature).remove_elements(theta, removed, chunk_size=chunk, sweep=sweep)
    monkeypatch.setattr(elements, "MIXED_MIN", 10**9)  # everything in float64
    ref, ref_cost = solve(curvature).remove_elements(theta, removed, chunk_size=chunk, sweep=sweep)
    assert used and min(used) >= mixed_min
    assert close(new, ref, rel=1e-9) and close(cost, ref_cost, rel=1e-9)
    if chunk is None:
        best, best_cost = constrained_optimum(curvature.to_dense(), theta, removed)
        assert close(new, best) and close(cost, best_cost)


def test_costs_and_row_col_updates_form_no_full_inverse():
    curvature = kron_curvature(9, 8, seed=3)
    solver = solve(curvature)
    theta = random_theta(9, 8)
    solver.element_costs(theta), solver.row_costs(theta), solver.col_costs(theta)
    rows = torch.zeros(9, dtype=torch.bool)
    rows[[1, 4]] = True
    cols = torch.zeros(8, dtype=torch.bool)
    cols[2] = True
    new, _ = solver.remove_rows_cols(theta, rows, cols)
    assert "g_inv" not in solver.__dict__ and "a_inv" not in solver.__dict__
    best, _ = constrained_optimum(curvature.to_dense(), theta, rows[:, None] | cols[None, :])
    assert close(new, best)
    g_inv = torch.linalg.inv(curvature.factors[0][0])
    assert close(solver.g_inv_diag, g_inv.diagonal(), rel=1e-12)


def test_rank2_chunks_share_the_mixed_solve(monkeypatch):
    # The eigenbasis solver of a sum of two Kronecker products solves its chunk systems
    # through the same mixed-precision path.
    curvature = kron_curvature(3, 220, rank=2, seed=6)
    theta = random_theta(3, 220)
    removed = random_mask(3, 220, 0.5)
    used = []
    real = elements.solve_spd_mixed
    monkeypatch.setattr(elements, "solve_spd_mixed", lambda m, b: used.append(len(m)) or real(m, b))
    new, cost = solve(curvature).remove_elements(theta, removed, chunk_size=None)
    assert used
    best, best_cost = constrained_optimum(curvature.to_dense(), theta, removed)
    assert close(new, best) and close(cost, best_cost)


def test_large_factors_form_their_inverses_in_float32(monkeypatch):
    m = _spd_with_condition(520, 1e2, seed=3)
    factor = damped_cholesky(m, 0.01)
    assert factor.matrix.shape[0] >= factor_module.FLOAT32_INVERSE_MIN and factor.low is not None
    fast = factor.inverse(), factor.inverse_cholesky_upper(), factor.inverse_diagonal()
    assert factor._cholesky is None  # no float64 factorisation was needed
    monkeypatch.setattr(factor_module, "FLOAT32_INVERSE_MIN", 10**9)
    factor = damped_cholesky(m, 0.01)
    exact = factor.inverse(), factor.inverse_cholesky_upper(), factor.inverse_diagonal()
    for f, e in zip(fast, exact, strict=True):
        assert f.dtype == F64 and close(f, e, rel=1e-5) and not torch.equal(f, e)
    assert close(exact[0], torch.linalg.inv(factor.matrix), rel=1e-12)


def test_element_updates_with_float32_inverses_cost_the_same(monkeypatch):
    curvature = kron_curvature(520, 6, seed=8)
    theta = random_theta(520, 6)
    removed = random_mask(520, 6, 0.5)
    new, cost = solve(curvature).remove_elements(theta, removed, chunk_size=64)
    monkeypatch.setattr(factor_module, "FLOAT32_INVERSE_MIN", 10**9)
    ref, ref_cost = solve(curvature).remove_elements(theta, removed, chunk_size=64)
    assert close(new, ref, rel=1e-5) and close(cost, ref_cost, rel=1e-6)
    assert torch.all(new[removed] == 0)
