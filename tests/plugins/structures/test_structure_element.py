"""The element structure: single-weight costs, counts, chunked correlated updates."""

from __future__ import annotations

import attrs
import pytest
import torch
from structure_cases import close, live_oracle, make_layer, on

from llm_surgeon.plugins.structures.element import ElementConfig, ElementStructure
from llm_surgeon.pruning import UpdateMode


def _threshold(costs: torch.Tensor, fraction: float) -> torch.Tensor:
    k = int(fraction * costs.numel())
    return costs <= costs.sort().values[k - 1]


@pytest.mark.parametrize("bias", [False, True])
def test_first_shot_matches_the_joint_oracle(bias):
    state, curvature = make_layer(6, 5, bias)
    structure = ElementStructure(ElementConfig(chunk_size=None))
    cands = structure.candidates(*on(state, curvature))
    theta = state.theta()
    diag_inv = torch.linalg.inv(curvature.to_dense()).diagonal().reshape(6, -1)
    assert close(cands.costs["elements"], (theta**2 / (2 * diag_inv))[:, :5].flatten())
    sel = _threshold(cands.costs["elements"], 0.4)
    removed = torch.zeros_like(theta, dtype=torch.bool)
    removed[:, :5] = sel.reshape(6, 5)
    expected, expected_cost = live_oracle(state, curvature, theta, removed)
    cost = structure.apply(*on(state, curvature), {"elements": sel}, UpdateMode.FULL)
    assert close(cost, expected_cost)
    assert close(state.theta(), expected)
    assert torch.all(state.pm.module.weight[sel.reshape(6, 5)] == 0)
    assert state.remaining == cands.remaining({"elements": int(sel.sum())}) == 30 - int(sel.sum())


@pytest.mark.parametrize("chunk", ["row", 3, None])
def test_second_shot_counts_dead_weights_and_keeps_them_zero(chunk):
    state, curvature = make_layer(6, 5, bias=True)
    structure = ElementStructure(ElementConfig(chunk_size=chunk))
    first = _threshold(structure.candidates(*on(state, curvature)).costs["elements"], 0.3)
    structure.apply(*on(state, curvature), {"elements": first}, UpdateMode.FULL)
    cands = structure.candidates(*on(state, curvature))
    costs = cands.costs["elements"]
    assert torch.all(costs[first] == 0) and torch.all(costs[~first] > 0)
    dead = int(first.sum())
    assert cands.remaining({"elements": 0}) == 30 - dead
    second = _threshold(costs, 0.6)
    assert torch.all(second[first])
    structure.apply(*on(state, curvature), {"elements": second}, UpdateMode.FULL)
    w = state.pm.module.weight
    assert torch.all(w[second.reshape(6, 5)] == 0)
    assert torch.all(w[~second.reshape(6, 5)] != 0)
    assert state.remaining == cands.remaining({"elements": int(second.sum())})


def test_second_shot_update_keeps_earlier_removals_as_constraints():
    """The second shot's update is the KKT optimum with old and new removals held at zero."""
    state, curvature = make_layer(6, 5, bias=True)
    structure = ElementStructure(ElementConfig(chunk_size=None))
    first = _threshold(structure.candidates(*on(state, curvature)).costs["elements"], 0.3)
    structure.apply(*on(state, curvature), {"elements": first}, UpdateMode.FULL)
    second = _threshold(structure.candidates(*on(state, curvature)).costs["elements"], 0.6)
    theta = state.theta()
    removed = torch.zeros_like(theta, dtype=torch.bool)
    removed[:, :5] = second.reshape(6, 5)  # includes the first shot's removals
    expected, expected_cost = live_oracle(state, curvature, theta, removed)
    cost = structure.apply(*on(state, curvature), {"elements": second}, UpdateMode.FULL)
    assert close(state.theta(), expected)
    assert close(cost, expected_cost)
    # Without the old zeros as constraints the optimum differs, so the check can fail.
    only_new = removed.clone()
    only_new[:, :5] &= ~first.reshape(6, 5)
    unconstrained, _ = live_oracle(state, curvature, theta, only_new)
    unconstrained[:, :5][first.reshape(6, 5)] = 0.0
    assert not close(unconstrained, expected)


def test_default_damping_per_structure_and_overrides():
    from llm_surgeon.methods.steps import resolved_damping
    from llm_surgeon.plugins.structures.nm import NMStructure
    from llm_surgeon.plugins.structures.row_col import RowColStructure
    from llm_surgeon.testing import make_session, tiny_model

    assert ElementStructure.default_damping_g == NMStructure.default_damping_g == 0.1
    assert ElementStructure.default_damping_a == NMStructure.default_damping_a == 0.01
    assert RowColStructure.default_damping_g == RowColStructure.default_damping_a == 0.1
    _, session = make_session(tiny_model("llama"), structure="element")
    assert (resolved_damping(session).g, resolved_damping(session).a) == (0.1, 0.01)
    session.config = attrs.evolve(session.config, damping_g=0.03)
    assert (resolved_damping(session).g, resolved_damping(session).a) == (0.03, 0.01)
    _, session = make_session(tiny_model("llama"), structure="row-col")
    session.config = attrs.evolve(session.config, damping_a=0.2)
    assert (resolved_damping(session).g, resolved_damping(session).a) == (0.1, 0.2)


def test_chunk_size_option_parsing():
    from llm_surgeon.solver import DEFAULT_CHUNK_SIZE

    assert ElementConfig().chunk_size == DEFAULT_CHUNK_SIZE
    assert ElementConfig(chunk_size="row").chunk_size == "row"
    assert ElementConfig(chunk_size="none").chunk_size is None
    assert ElementConfig(chunk_size="64").chunk_size == 64
    for bad in (0, -3, "rows", 1.5, True):
        with pytest.raises(ValueError, match="chunk_size"):
            ElementConfig(chunk_size=bad)
