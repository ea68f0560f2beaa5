"""Check that an adapter's couplings are exact: each candidate is one real dimension.

A coupling's candidate ``i`` names rows of its row members (outputs that produce the
dimension) and columns of its column members (inputs that consume it). The
declaration is exact when, once the consumers' columns of candidate ``i`` are zero,
the producers' rows of ``i`` (with their biases) are dead: zeroing them too changes
no logit. A candidate whose coupling has no column members (key/value heads) is dead
once the candidates that imply it (its group of query heads) lose their columns. A
wrong offset or width makes the zeroed rows feed a live column, and the logits change.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from llm_surgeon.model.adapters import ArchitectureAdapter, PrunableModule
from llm_surgeon.model.couplings import Coupling, Member


def _zero(modules: dict[str, PrunableModule], member: Member, candidate: int) -> None:
    pm = modules[member.module]
    span = list(member.span(candidate))
    assert span[-1] < pm.shape[0 if member.axis == "row" else 1], (
        f"{member.module}: {member.axis}s {span[0]}..{span[-1]} lie outside its {pm.shape} weight")
    w = pm.weight
    if member.axis == "row":
        w[span, :] = 0
        if pm.module.bias is not None:
            pm.module.bias[span] = 0
    else:
        w[:, span] = 0


def _zeroed_logits(model: nn.Module, adapter: ArchitectureAdapter, tokens: Tensor,
                   zero: list[tuple[Member, int]]) -> Tensor:
    model = copy.deepcopy(model)
    modules = {pm.name: pm for pm in adapter.prunable_modules(model)}
    for member, candidate in zero:
        _zero(modules, member, candidate)
    return model(input_ids=tokens, use_cache=False).logits


def _consumers(coupling: Coupling, by_name: dict[str, Coupling], candidate: int) -> list[tuple[Member, int]]:
    """The column spans whose removal kills candidate ``candidate`` of ``coupling``."""
    cols = [(m, candidate) for m in coupling.members if m.axis == "col"]
    if cols or coupling.implied_by is None:
        return cols
    parent_name, n = coupling.implied_by
    parent = by_name[parent_name]
    return [c for j in range(candidate * n, (candidate + 1) * n) for c in _consumers(parent, by_name, j)]


@torch.no_grad()
def check_coupling(model: nn.Module, adapter: ArchitectureAdapter, tokens: Tensor,
                   coupling: Coupling, by_name: dict[str, Coupling]) -> None:
    """Assert that the first and last candidates of ``coupling`` are exact (float64)."""
    for candidate in sorted({0, coupling.size - 1}):
        consumers = _consumers(coupling, by_name, candidate)
        assert consumers, f"{coupling.name}: no column members and nothing that implies it"
        producers = [(m, candidate) for m in coupling.members if m.axis == "row"]
        without_cols = _zeroed_logits(model, adapter, tokens, consumers)
        without_both = _zeroed_logits(model, adapter, tokens, consumers + producers)
        torch.testing.assert_close(
            without_both, without_cols, rtol=1e-9, atol=1e-9,
            msg=lambda m, c=candidate: f"coupling {coupling.name} candidate {c} is not exact: rows stay "
                                       f"live after their columns are removed ({m})")


def check_couplings(model: nn.Module, adapter: ArchitectureAdapter, tokens: Tensor) -> str:
    """Check every coupling the adapter declares; ``"ok"`` or ``"skipped: ..."``."""
    model = copy.deepcopy(model).double()
    couplings = adapter.couplings(model)
    if not couplings:
        return "skipped: the adapter declares no couplings"
    modules = {pm.name for pm in adapter.prunable_modules(model)}
    by_name = {c.name: c for c in couplings}
    assert len(by_name) == len(couplings), "coupling names are not unique"
    for coupling in couplings:
        for member in coupling.members:
            assert member.module in modules, f"{coupling.name}: {member.module} is not a prunable module"
        if coupling.implied_by is not None:
            assert coupling.implied_by[0] in by_name, f"{coupling.name}: implied by unknown coupling"
        check_coupling(model, adapter, tokens, coupling, by_name)
    return "ok"


@torch.no_grad()
def check_dead(model: nn.Module, adapter: ArchitectureAdapter, tokens: Tensor, seed: int = 0) -> str:
    """Dead-structure propagation over the declared couplings changes no logit (float64).

    Random rows (most with their biases, some keeping them, so that constant
    dimensions get folded into biases) and columns of every module are removed;
    :func:`~llm_surgeon.pruning.remove_dead` must then free weights without moving
    any logit. ``"ok"`` or ``"skipped: ..."``.
    """
    from llm_surgeon.model.state import ModuleState
    from llm_surgeon.pruning.dead import remove_dead

    model = copy.deepcopy(model).double()
    couplings = adapter.couplings(model)
    if not couplings:
        return "skipped: the adapter declares no couplings"
    gen = torch.Generator().manual_seed(seed)
    states = [ModuleState.dense(pm) for pm in adapter.prunable_modules(model)]
    for state in states:
        draw = torch.rand(state.mask.shape[0], generator=gen)
        state.mask[draw < 0.4] = False
        state.mask[:, torch.rand(state.mask.shape[1], generator=gen) < 0.3] = False
        state.apply_mask()
        if state.pm.has_bias:  # rows drawn below 0.3 lose their bias, those in [0.3, 0.4) keep it
            state.pm.module.bias[draw < 0.3] = 0
    before = model(input_ids=tokens, use_cache=False).logits
    freed = remove_dead(states, couplings)
    after = model(input_ids=tokens, use_cache=False).logits
    torch.testing.assert_close(after, before, rtol=1e-9, atol=1e-9,
                               msg=lambda m: f"dead-structure propagation changed the logits ({m})")
    del freed
    return "ok"
