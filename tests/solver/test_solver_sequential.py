"""The sequential sweep of element removals (earlier rows fixed) against brute-force KKT solves."""

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
)

from llm_surgeon.solver import base, plan_chunks, sequential
from llm_surgeon.solver.factor import damped_cholesky


def _steps_by_brute_force(f: torch.Tensor, theta: torch.Tensor, removed: torch.Tensor,
                          chunk) -> tuple[torch.Tensor, float]:
    """Each chunk removed by the KKT solution over the weights from its first owned row on."""
    d_out, d_in = theta.shape
    flat, bounds = plan_chunks(removed, chunk, whole_rows=base.MAX_JOINT)
    t = theta.flatten().clone()
    row = 0
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        idx = flat[lo:hi]
        start = row * d_in
        sub = f[start:, start:]
        k = torch.zeros(len(t) - start, dtype=torch.bool)
        k[idx - start] = True
        tail, _ = constrained_optimum(sub, t[start:], k)
        t[start:] = tail.flatten()
        row = int(idx[-1]) // d_in + 1
    delta = t - theta.flatten()
    return t.reshape(d_out, d_in), 0.5 * float(delta @ f @ delta)


@pytest.mark.parametrize("chunk", [1, 4, 9, "row", None])
@pytest.mark.parametrize("empty_rows", [False, True])
def test_sequential_steps_are_the_kkt_solutions_with_earlier_rows_fixed(chunk, empty_rows):
    curvature = kron_curvature(8, 6, seed=7)
    theta = random_theta(8, 6, seed=3)
    removed = random_mask(8, 6, 0.45, seed=4)
    if empty_rows:
        removed[[0, 3, 4]] = False
    new, cost = solve(curvature).remove_elements(theta, removed, chunk_size=chunk, sweep="sequential")
    ref, ref_cost = _steps_by_brute_force(curvature.to_dense(), theta, removed, chunk)
    assert torch.all(new[removed] == 0)
    assert close(new, ref, rel=1e-10) and close(cost, ref_cost, rel=1e-10)
    best, best_cost = constrained_optimum(curvature.to_dense(), theta, removed)
    assert cost >= best_cost * (1 - 1e-12)
    if chunk is None:  # one chunk owning every row: the joint removal
        assert close(new, best, rel=1e-10)


def test_sequential_is_the_default_for_rank1():
    curvature = kron_curvature(6, 5, seed=2)
    theta, removed = random_theta(6, 5), random_mask(6, 5, 0.5)
    default = solve(curvature).remove_elements(theta, removed, chunk_size=2)
    explicit = solve(curvature).remove_elements(theta, removed, chunk_size=2, sweep="sequential")
    other = solve(curvature).remove_elements(theta, removed, chunk_size=2, sweep="gauss-seidel")
    assert torch.equal(default[0], explicit[0]) and not torch.equal(default[0], other[0])
    with pytest.raises(ValueError, match="sweep"):
        solve(curvature).remove_elements(theta, removed, sweep="jacobi")


def test_rows_beyond_the_joint_limit_are_split_and_stay_zero(monkeypatch):
    monkeypatch.setattr(sequential, "MAX_JOINT", 3)
    curvature = kron_curvature(4, 9, seed=5)
    theta = random_theta(4, 9)
    removed = random_mask(4, 9, 0.7)
    new, cost = solve(curvature).remove_elements(theta, removed, chunk_size=2, sweep="sequential")
    _, best_cost = constrained_optimum(curvature.to_dense(), theta, removed)
    assert torch.all(new[removed] == 0) and cost >= best_cost * (1 - 1e-12)


def test_inverse_cholesky_upper_gives_the_inverses_of_trailing_blocks():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(12, 15, generator=gen, dtype=F64)
    factor = damped_cholesky(x @ x.T / 15, 0.05)
    u = factor.inverse_cholesky_upper()
    assert torch.equal(u, u.triu())
    assert close(u.T @ u, torch.linalg.inv(factor.matrix), rel=1e-12)
    for r in (0, 5, 11):
        trailing = torch.linalg.inv(factor.matrix[r:, r:])
        assert close(u[r, r] * u[r, r:], trailing[0], rel=1e-12)
