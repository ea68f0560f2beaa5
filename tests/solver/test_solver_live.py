"""Live sub-matrix views and the solver cache."""

from __future__ import annotations

import torch
from solver_cases import close, kron_curvature, random_theta

from llm_surgeon.curvature import KroneckerCurvature
from llm_surgeon.solver import Damping, LiveView, Solvers


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


def _solvers(curvatures: dict, **kwargs) -> Solvers:
    return Solvers(curvatures, Damping(g=0.01, a=0.01), **kwargs)


def test_cache_keeps_nothing_by_default(monkeypatch):
    monkeypatch.delenv("LLM_SURGEON_SOLVER_CACHE_MB", raising=False)
    curvature = kron_curvature(5, 5)
    solvers = _solvers({"m": curvature})
    view = LiveView.of(_mask(), has_bias=True)
    assert solvers.solver("m", view) is not solvers.solver("m", view)
    monkeypatch.setenv("LLM_SURGEON_SOLVER_CACHE_MB", "1")
    solvers = _solvers({"m": curvature})
    assert solvers.solver("m", view) is solvers.solver("m", view)


def test_cache_reuses_then_pops():
    solvers = _solvers({"m": kron_curvature(5, 5)}, max_bytes=2**20)
    view = LiveView.of(_mask(), has_bias=True)
    first = solvers.solver("m", view)
    assert solvers.solver("m", view) is first
    assert solvers.solver("m", view, pop=True) is first
    assert solvers.solver("m", view, pop=True) is not first  # popped: built anew, not kept
    other = LiveView.of(torch.ones(5, 4, dtype=torch.bool), has_bias=True)
    solvers.solver("m", view)
    assert solvers.solver("m", other) is not first  # a different live view is a miss


def test_cache_respects_its_budget_and_discards():
    view = LiveView.of(torch.ones(5, 4, dtype=torch.bool), has_bias=True)
    solvers = _solvers({"a": kron_curvature(5, 5, seed=1), "b": kron_curvature(5, 5, seed=2)},
                       max_bytes=8 * 3 * 50)  # room for exactly one 5x5 problem
    solvers.solver("a", view)
    solvers.solver("b", view)
    assert len(solvers._entries) == 1
    solvers.discard("a")
    assert len(solvers._entries) == 0 and solvers._bytes == 0


def test_escalations_are_recorded_per_module_not_on_the_curvature():
    g = torch.zeros(5, 5, dtype=torch.float64)
    g[0, 0] = 1.0  # singular
    curvature = KroneckerCurvature(((g, torch.eye(5, dtype=torch.float64)),), 5, 5)
    solvers = Solvers({"m": curvature}, Damping(g=0.0, a=0.0))
    view = LiveView.of(torch.ones(5, 5, dtype=torch.bool), has_bias=False)
    solvers.solver("m", view).element_costs(random_theta(5, 5))
    assert solvers.escalations["m"] >= 1
    assert "damping_escalations" not in curvature.info
