"""The dims structure: group costs against the dense formula, exact removal, sizes, options."""

from __future__ import annotations

import attrs
import pytest
import torch
from model_cases import FAMILIES, LiveOracle, model_case, random_solvers
from structure_cases import close, live_oracle

from llm_surgeon.errors import ConfigError
from llm_surgeon.plugins.structures.dim_costs import dimension_costs
from llm_surgeon.plugins.structures.dims import DimsConfig, DimsStructure
from llm_surgeon.plugins.structures.row_col import remove_rows_cols
from llm_surgeon.pruning import UpdateMode


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


@pytest.mark.parametrize("cost", ["readers", "members"])
@pytest.mark.parametrize("family", FAMILIES)
def test_unit_costs_add_the_key_value_head_to_the_last_head_of_its_group(family, cost):
    _, adapter, states, couplings = model_case(family)
    solvers, _ = random_solvers(states)
    structure = DimsStructure(DimsConfig(normalize=False, cost=cost))
    readers = cost == "readers"
    by_name = {s.pm.name: s for s in states}
    for scope in structure.scopes(states, adapter, couplings):
        unit_costs = structure.candidates(scope, solvers).costs["dims"]
        units = structure._units[scope.name][1]
        assert all(len(m) == 1 for m in units.members)
        dims = torch.cat(units.members)
        own = dimension_costs(scope.coupling, by_name, solvers, readers_only=readers)[dims]
        if not scope.implied:  # MLP neurons: the unit is the neuron
            assert close(unit_costs, own)
            continue
        kv = scope.implied[0]
        kv_costs = dimension_costs(kv, by_name, solvers, readers_only=readers)
        group = dims // (scope.coupling.size // kv.size)
        for g in range(kv.size):
            units_g = (group == g).nonzero().flatten()
            last = units_g[own[units_g].argmax()]
            for u in units_g.tolist():
                assert close(unit_costs[u], own[u] + (kv_costs[g] if u == last else 0.0))


def _select_units(units, count: int) -> torch.Tensor:
    """The ``count`` cheapest units, as the global threshold selects them (stable order)."""
    order = torch.sort(units.costs, stable=True).indices
    selected = torch.zeros(len(units.costs), dtype=torch.bool)
    selected[order[:count]] = True
    return selected


@pytest.mark.parametrize("family", FAMILIES)
def test_member_removal_is_the_exact_update_and_zeroes_every_member(family):
    _, adapter, states, couplings = model_case(family)
    _kill_some(states, seed=5)
    solvers, curvatures = random_solvers(states)
    structure = DimsStructure(DimsConfig(cost="members"))
    for scope in structure.scopes(states, adapter, couplings):
        cands = structure.candidates(scope, solvers)
        units = structure._units[scope.name][1]
        count = max(1, len(units.costs) // 2) if scope.implied else len(units.costs) // 3
        selected = _select_units(units, count)
        predicted = structure.masks_after(scope, {"dims": selected})
        before = {s.pm.name: (s.theta(), s.mask.clone()) for s in scope.states}
        expected = {}
        for s, mask in zip(scope.states, predicted, strict=True):
            removed = torch.zeros(s.mask.shape[0], s.mask.shape[1] + int(s.pm.has_bias), dtype=torch.bool)
            gone = s.mask & ~mask
            removed[:, : s.mask.shape[1]] = gone
            rows = gone.any(1) & ~mask.any(1)
            removed[rows] = True  # removed rows take their bias
            # Columns and rows are whole on the live sub-matrix.
            expected[s.pm.name] = live_oracle(s, curvatures[s.pm.name], before[s.pm.name][0], removed)
        cost = structure.apply(scope, solvers, {"dims": selected}, UpdateMode.FULL)
        assert close(cost, sum(c for _, c in expected.values()))
        chosen = units.chosen(selected)
        for s, mask in zip(scope.states, predicted, strict=True):
            assert torch.equal(s.mask, mask), s.pm.name
            assert close(s.theta(), expected[s.pm.name][0]), s.pm.name
        for m in scope.coupling.members:  # every member of every removed candidate is exactly zero
            w = states[[x.pm.name for x in states].index(m.module)].pm.module.weight
            lines = m.index(scope.coupling.size)[chosen].flatten()
            assert torch.all((w[lines] if m.axis == "row" else w[:, lines]) == 0)
        assert sum(s.remaining for s in scope.states) == cands.remaining({"dims": count})


@pytest.mark.parametrize("family", FAMILIES)
def test_reader_costs_are_the_dense_formula_of_the_reading_columns(family):
    _, _, states, couplings = model_case(family)
    _kill_some(states, seed=7)
    solvers, curvatures = random_solvers(states)
    by_name = {s.pm.name: s for s in states}
    oracles = {s.pm.name: LiveOracle(s, curvatures[s.pm.name]) for s in states}
    for coupling in couplings:
        readers = attrs.evolve(coupling, members=tuple(m for m in coupling.members if m.axis == "col"))
        costs = dimension_costs(coupling, by_name, solvers, readers_only=True)
        expected = [_dense_group_cost(readers, by_name, oracles, i) for i in range(coupling.size)]
        assert close(costs, expected, rel=1e-8), coupling.name
        if coupling.kind == "kv-heads":  # only rows: dead once their query heads are gone
            assert not bool(costs.any())
        else:
            assert bool((costs > 0).any())


def _logits(model) -> torch.Tensor:
    ids = torch.arange(24).remainder(model.config.vocab_size)[None]
    with torch.no_grad():
        return model(ids).logits


@pytest.mark.parametrize("family", FAMILIES)
def test_reader_removal_updates_the_readers_and_zeroes_the_dead_rows_exactly(family):
    """``cost=readers``: the reading columns get their exact update, the rows nothing.

    The logits equal those of a copy where only the reading columns were removed (with
    the same update) and every row was left as it was: the zeroed rows were dead.
    """
    model, adapter, states, couplings = model_case(family)
    control, _, control_states, _ = model_case(family)
    _kill_some(states, seed=5)
    _kill_some(control_states, seed=5)
    solvers, curvatures = random_solvers(states)
    control_solvers, _ = random_solvers(control_states)
    by_control = {s.pm.name: s for s in control_states}
    structure = DimsStructure()  # cost=readers, the default
    for scope in structure.scopes(states, adapter, couplings):
        structure.candidates(scope, solvers)
        units = structure._units[scope.name][1]
        count = max(1, len(units.costs) // 2) if scope.implied else len(units.costs) // 3
        selected = _select_units(units, count)
        predicted = structure.masks_after(scope, {"dims": selected})
        before = {s.pm.name: s.theta() for s in scope.states}
        expected, cost = {}, 0.0
        for s, mask in zip(scope.states, predicted, strict=True):
            gone_cols = s.mask.any(0) & ~mask.any(0)
            removed = torch.zeros(s.mask.shape[0], s.mask.shape[1] + int(s.pm.has_bias), dtype=torch.bool)
            removed[:, : s.mask.shape[1]] = s.mask & gone_cols[None, :]
            theta, c = live_oracle(s, curvatures[s.pm.name], before[s.pm.name], removed)
            dead_rows = s.mask.any(1) & ~mask.any(1)
            theta[dead_rows] = 0  # weights and bias, nothing else moves
            expected[s.pm.name], cost = theta, cost + c
            remove_rows_cols(by_control[s.pm.name], control_solvers, torch.zeros_like(dead_rows), gone_cols,
                             UpdateMode.FULL)
        assert close(structure.apply(scope, solvers, {"dims": selected}, UpdateMode.FULL), cost)
        for s, mask in zip(scope.states, predicted, strict=True):
            assert torch.equal(s.mask, mask), s.pm.name
            assert close(s.theta(), expected[s.pm.name], rel=1e-10), s.pm.name
    assert close(_logits(model), _logits(control), rel=1e-10)
    assert sum(s.remaining for s in states) < sum(s.remaining for s in control_states)


def test_reader_costs_need_a_reading_member():
    _, adapter, states, couplings = model_case("llama")
    rows_only = [attrs.evolve(c, members=tuple(m for m in c.members if m.axis == "row"))
                 if c.kind == "mlp" else c for c in couplings]
    with pytest.raises(ConfigError, match="cost=readers needs coupling"):
        DimsStructure().scopes(states, adapter, rows_only)
    assert DimsStructure(DimsConfig(cost="members")).scopes(states, adapter, rows_only)


def test_key_value_heads_go_only_with_their_whole_group():
    _, adapter, states, couplings = model_case("llama")
    solvers, _ = random_solvers(states)
    structure = DimsStructure()
    scope = next(s for s in structure.scopes(states, adapter, couplings) if s.implied)
    cands = structure.candidates(scope, solvers)
    units = structure._units[scope.name][1]
    k = next(s for s in scope.states if s.pm.role == "k")
    heads = torch.cat(units.members)
    for count in range(len(units.costs) + 1):
        selected = _select_units(units, count)
        masks = dict(zip([s.pm.name for s in scope.states], structure.masks_after(scope, {"dims": selected}),
                         strict=True))
        gone = set((heads[selected] // 2).tolist())
        whole = [g for g in (0, 1) if all(int(h) // 2 != g or bool(selected[u]) for u, h in enumerate(heads))]
        kv_dead = (~masks[k.pm.name].any(1)).reshape(2, 4).all(1)
        assert kv_dead.tolist() == [g in whole for g in (0, 1)], (count, gone)
        assert sum(int(m.sum()) for m in masks.values()) == cands.remaining({"dims": count})


def test_multiple_and_minimum_widths():
    _, adapter, states, couplings = model_case("opt")
    solvers, _ = random_solvers(states)
    structure = DimsStructure(DimsConfig(multiple=8, min_width=12, min_heads=3))
    for scope in structure.scopes(states, adapter, couplings):
        cands = structure.candidates(scope, solvers)
        units = structure._units[scope.name][1]
        sizes = [len(m) for m in units.members]
        if scope.coupling.kind == "mlp":
            # 32 neurons, at least 12 kept -> 16 kept at least (a multiple of 8): two blocks of 8.
            assert sizes == [8, 8]
        else:
            assert sizes == [1]  # 4 heads, 3 kept
        everything = torch.ones(len(units.costs), dtype=torch.bool)
        masks = structure.masks_after(scope, {"dims": everything})
        kept = structure._units[scope.name][1].size - int(units.chosen(everything).sum())
        assert kept == (16 if scope.coupling.kind == "mlp" else 3)
        assert sum(int(m.sum()) for m in masks) == cands.remaining({"dims": len(units.costs)})


def test_blocks_are_the_cheapest_candidates_and_cost_their_sum():
    _, adapter, states, couplings = model_case("llama")
    solvers, _ = random_solvers(states)
    by_name = {s.pm.name: s for s in states}
    plain = DimsStructure(DimsConfig(multiple=8, normalize=False))
    scope = next(s for s in plain.scopes(states, adapter, couplings) if s.coupling.kind == "mlp")
    costs = plain.candidates(scope, solvers).costs["dims"]
    own = dimension_costs(scope.coupling, by_name, solvers, readers_only=True)
    ranked = torch.sort(own, stable=True).values
    assert close(costs, ranked.reshape(4, 8).sum(1))
    per_weight = DimsStructure(DimsConfig(multiple=8))
    costs = per_weight.candidates(scope, solvers).costs["dims"]
    assert close(costs, ranked.reshape(4, 8).sum(1) / (8 * 3 * 16))  # 3 members of 16 weights each


def test_a_global_threshold_reaches_the_target_within_one_group():
    from llm_surgeon.pruning import global_threshold

    _, adapter, states, couplings = model_case("llama-bias")
    solvers, _ = random_solvers(states)
    structure = DimsStructure()
    scopes = structure.scopes(states, adapter, couplings)
    total = sum(s.pm.numel for s in states)
    for target in (0.9, 0.7, 0.5):
        cands = [structure.candidates(scope, solvers) for scope in scopes]
        selections, kept = global_threshold(cands, round(target * total))
        largest = max(structure.max_candidate_weights(s) for s in scopes)
        assert abs(kept - target * total) <= largest
        predicted = sum(int(m.sum()) for scope, sel in zip(scopes, selections, strict=True)
                        for m in structure.masks_after(scope, sel))
        assert predicted == kept


def test_config_is_validated_and_layer_wise_methods_refuse_dims():
    from llm_surgeon.run.config import RunConfig
    from llm_surgeon.run.validate import validate_run

    for bad in ({"multiple": 0}, {"min_width": -1}, {"size": "zeros"}, {"normalize": "yes"},
                {"cost": "both"}):
        with pytest.raises((TypeError, ValueError)):
            DimsConfig(**bad)
    for method in ("sparsegpt", "wanda"):
        with pytest.raises(ConfigError, match=r"does not support structure 'dims'"):
            validate_run(RunConfig(model="smollm2-135m", method=method, structure="dims"), check_model=False)


def test_dims_needs_an_adapter_with_couplings_before_loading():
    from types import SimpleNamespace

    from llm_surgeon.plugins.architectures.llama import LlamaAdapter
    from llm_surgeon.registry import Kind, get_registry
    from llm_surgeon.run.validate import _check_couplings

    class NoCouplings(LlamaAdapter):
        couplings = LlamaAdapter.__mro__[1].couplings  # the base class's: declares none

    dims = get_registry().get(Kind.STRUCTURE, "dims")
    _check_couplings(dims, SimpleNamespace(factory=LlamaAdapter), "llama")
    with pytest.raises(ConfigError, match="declares none"):
        _check_couplings(dims, SimpleNamespace(factory=NoCouplings), "phi")
    row_col = get_registry().get(Kind.STRUCTURE, "row-col")
    _check_couplings(row_col, SimpleNamespace(factory=NoCouplings), "phi")
    _, adapter, states, _ = model_case("llama")
    with pytest.raises(ConfigError, match="declare couplings"):
        DimsStructure().scopes(states, adapter, [])
