"""The n:m structure: n cheapest per group as candidates, exact pattern at the end."""

from __future__ import annotations

import pytest
import torch
from structure_cases import NO_DAMPING, close, make_layer, on

from llm_surgeon.errors import ConfigError
from llm_surgeon.plugins.structures.nm import NMConfig, NMStructure
from llm_surgeon.pruning import UpdateMode
from llm_surgeon.solver import solver_for


@pytest.mark.parametrize(("n", "m"), [(2, 4), (1, 4), (3, 4)])
@pytest.mark.parametrize("bias", [False, True])
def test_candidates_and_final_pattern(n, m, bias):
    state, curvature = make_layer(5, 8, bias, seed=3)
    structure = NMStructure(NMConfig(n=n, m=m, chunk_size="row"))
    assert structure.implied_size == 1 - n / m
    cands = structure.candidates(*on(state, curvature))
    costs = cands.costs["elements"]
    assert costs.shape == (5 * (8 // m) * n,)
    # The candidates are each group's n cheapest single-weight costs.
    element = solver_for(curvature, NO_DAMPING).element_costs(state.theta())[:, :8].reshape(5, 8 // m, m)
    assert close(costs.reshape(5, 8 // m, n), element.sort(dim=2).values[..., :n])
    # Shot 1: a threshold takes some candidates.
    first = costs <= costs.median()
    structure.apply(*on(state, curvature), {"elements": first}, UpdateMode.FULL)
    assert state.remaining == cands.remaining({"elements": int(first.sum())})
    # Final shot: every candidate is taken.
    cands = structure.candidates(*on(state, curvature))
    assert int((cands.costs["elements"] == 0).sum()) == int(first.sum())  # the dead ones
    everything = torch.ones_like(cands.costs["elements"], dtype=torch.bool)
    structure.apply(*on(state, curvature), {"elements": everything}, UpdateMode.FULL)
    alive = state.pm.module.weight.ne(0).reshape(5, 8 // m, m).sum(dim=2)
    assert torch.all(alive == m - n)
    assert state.remaining == cands.remaining({"elements": everything.numel()}) == 5 * 8 * (m - n) // m


def test_dead_weights_come_first_in_their_group():
    state, curvature = make_layer(3, 4, bias=False, seed=1)
    structure = NMStructure(NMConfig(n=2, m=4))
    state.mask[0, 3] = False  # removed earlier
    with torch.no_grad():
        state.pm.module.weight[0, 3] = 0.0
    cands = structure.candidates(*on(state, curvature))
    first_group = cands.costs["elements"].reshape(3, 1, 2)[0, 0]
    assert float(first_group[0]) == 0.0 and float(first_group[1]) > 0.0


def test_indivisible_inputs_raise():
    state, curvature = make_layer(3, 6, bias=False)
    with pytest.raises(ConfigError, match="multiple of M=4"):
        NMStructure(NMConfig(n=2, m=4)).candidates(*on(state, curvature))


def test_config_validation():
    assert (NMConfig().n, NMConfig().m) == (2, 4)
    with pytest.raises(ValueError, match="0 < n < m"):
        NMConfig(n=4, m=4)
    with pytest.raises(ValueError):
        NMConfig(n=0, m=4)
