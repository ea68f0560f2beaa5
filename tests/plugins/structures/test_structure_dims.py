"""The dims structure: group costs against the dense formula, exact removal, sizes, options."""

from __future__ import annotations

import pytest
import torch
from model_cases import FAMILIES, LiveOracle, model_case, random_solvers
from structure_cases import close

from llm_surgeon.plugins.structures.dim_costs import dimension_costs
from llm_surgeon.plugins.structures.dims import DimsConfig, DimsStructure


def _member_removed(state, member, candidate: int) -> torch.Tensor:
    d_out, d_w = state.mask.shape
    removed = torch.zeros(d_out, d_w + int(state.pm.has_bias), dtype=torch.bool)
    span = list(member.span(candidate))
    if member.axis == "row":
        removed[span] = True  # the rows' biases go with them
    else:
        removed[:, span] = True
    return removed


def _dense_group_cost(coupling, states, oracles, candidate: int) -> float:
    """Sum over the members of the brute-force cost of the candidate's rows or columns."""
    return sum(oracles[m.module].cost(_member_removed(states[m.module], m, candidate)) for m in coupling.members)


def _kill_some(states, seed: int = 3) -> None:
    """Remove random rows and columns first, so costs are taken on live sub-matrices."""
    gen = torch.Generator().manual_seed(seed)
    for s in states:
        rows = torch.rand(s.mask.shape[0], generator=gen) < 0.15
        cols = torch.rand(s.mask.shape[1], generator=gen) < 0.15
        s.mask &= ~rows[:, None] & ~cols[None, :]
        s.apply_mask()


@pytest.mark.parametrize("partly_pruned", [False, True])
@pytest.mark.parametrize("family", FAMILIES)
def test_every_group_cost_is_the_dense_formula_summed_over_members(family, partly_pruned):
    _, _, states, couplings = model_case(family)
    if partly_pruned:
        _kill_some(states)
    solvers, curvatures = random_solvers(states)
    by_name = {s.pm.name: s for s in states}
    oracles = {s.pm.name: LiveOracle(s, curvatures[s.pm.name]) for s in states}
    for coupling in couplings:
        costs = dimension_costs(coupling, by_name, solvers)
        expected = [_dense_group_cost(coupling, by_name, oracles, i) for i in range(coupling.size)]
        assert close(costs, expected, rel=1e-8), coupling.name


@pytest.mark.parametrize("family", FAMILIES)
def test_unit_costs_add_the_key_value_head_to_the_last_head_of_its_group(family):
    _, adapter, states, couplings = model_case(family)
    solvers, _ = random_solvers(states)
    structure = DimsStructure(DimsConfig(normalize=False))
    by_name = {s.pm.name: s for s in states}
    for scope in structure.scopes(states, adapter, couplings):
        unit_costs = structure.candidates(scope, solvers).costs["dims"]
        units = structure._units[scope.name][1]
        assert all(len(m) == 1 for m in units.members)
        dims = torch.cat(units.members)
        own = dimension_costs(scope.coupling, by_name, solvers)[dims]
        if not scope.implied:  # MLP neurons: the unit is the neuron
            assert close(unit_costs, own)
            continue
        kv = scope.implied[0]
        kv_costs = dimension_costs(kv, by_name, solvers)
        group = dims // (scope.coupling.size // kv.size)
        for g in range(kv.size):
            units_g = (group == g).nonzero().flatten()
            last = units_g[own[units_g].argmax()]
            for u in units_g.tolist():
                assert close(unit_costs[u], own[u] + (kv_costs[g] if u == last else 0.0))
