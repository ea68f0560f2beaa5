"""Live sub-matrix views and the solver cache."""

from __future__ import annotations

import gc

import torch
from solver_cases import close, kron_curvature, random_theta

from llm_surgeon.solver import LiveView, SolverCache


def _mask() -> torch.Tensor:
    mask = torch.ones(5, 4, dtype=torch.bool)
    mask[1] = False  # a removed row
    mask[:, 2] = False  # a removed column
    mask[3, 0] = False  # a single removed weight (row and column stay live)
    return mask


def test_view_keeps_the_bias_column():
    view = LiveView.of(_mask(), has_bias=True)
    assert view.rows.tolist() == [0, 2, 3, 4]
    assert view.cols.tolist() == [0, 1, 3, 4]
    assert (view.d_out, view.d_in) == (5, 5)
    no_bias = LiveView.of(_mask(), has_bias=False)
    assert no_bias.cols.tolist() == [0, 1, 3] and no_bias.d_in == 4


def test_restrict_and_scatter_round_trip():
    view = LiveView.of(_mask(), has_bias=True)
    theta = random_theta(5, 5)
    sub = view.restrict(theta)
    assert sub.shape == (4, 4)
    assert torch.equal(view.scatter(theta, sub), theta)
    out = view.scatter(theta, torch.zeros_like(sub))
    assert torch.equal(out[1], theta[1]) and torch.equal(out[:, 2], theta[:, 2])
    assert float(out[0, 0]) == 0.0


def test_restricted_curvature_is_the_sub_block():
    curvature = kron_curvature(5, 5)
    view = LiveView.of(_mask(), has_bias=True)
    sub = view.curvature(curvature)
    idx = (view.rows[:, None] * 5 + view.cols[None, :]).flatten()
    assert close(sub.to_dense(), curvature.to_dense()[idx][:, idx])


def test_cache_keeps_nothing_by_default(monkeypatch):
    monkeypatch.delenv("LLM_SURGEON_SOLVER_CACHE_MB", raising=False)
    cache = SolverCache()
    curvature = kron_curvature(5, 5)
    view = LiveView.of(_mask(), has_bias=True)
    assert cache.get(curvature, view) is not cache.get(curvature, view)
    monkeypatch.setenv("LLM_SURGEON_SOLVER_CACHE_MB", "1")
    cache = SolverCache()
    assert cache.get(curvature, view) is cache.get(curvature, view)


def test_cache_reuses_then_pops():
    cache = SolverCache(max_bytes=2**20)
    curvature = kron_curvature(5, 5)
    view = LiveView.of(_mask(), has_bias=True)
    first = cache.get(curvature, view)
    assert cache.get(curvature, view) is first
    assert cache.get(curvature, view, pop=True) is first
    assert cache.get(curvature, view, pop=True) is not first  # popped: built anew, not kept
    other = LiveView.of(torch.ones(5, 4, dtype=torch.bool), has_bias=True)
    cache.get(curvature, view)
    assert cache.get(curvature, other) is not first  # a different live view is a miss


def test_cache_respects_its_budget_and_forgets_dead_curvatures():
    view = LiveView.of(torch.ones(5, 4, dtype=torch.bool), has_bias=True)
    cache = SolverCache(max_bytes=8 * 3 * 50)  # room for exactly one 5x5 problem
    a, b = kron_curvature(5, 5, seed=1), kron_curvature(5, 5, seed=2)
    cache.get(a, view)
    cache.get(b, view)
    assert len(cache._entries) == 1
    del a
    gc.collect()
    assert len(cache._entries) == 0 and cache._bytes == 0
