"""Which rank owns which scope's solve, and how its results reach the other ranks.

In a distributed job every rank holds the summed curvature of every module, but each
scope's factorisations, candidate costs and removal run on one owner rank, chosen by a
cost-balanced assignment (:func:`scope_owners`, factorisation cost ``~ d^3``). After the
removal the owners broadcast the weights and masks they changed
(:func:`broadcast_states`), so every rank again holds the same model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from llm_surgeon.curvature.types import Curvature
from llm_surgeon.dist import Communicator
from llm_surgeon.model.state import ModuleState
from llm_surgeon.pruning.structures import Scope


def factorisation_cost(state: ModuleState) -> float:
    """``R^3 + C^3`` for a module's live rows ``R`` and columns ``C`` (its two factorisations)."""
    rows = int(state.mask.any(dim=1).sum())
    cols = int(state.mask.any(dim=0).sum()) + int(state.pm.has_bias)
    return float(rows) ** 3 + float(cols) ** 3


def scope_owners(comm: Communicator, scopes: Sequence[Scope]) -> list[int]:
    """The owner rank of each scope (all 0 in a single process)."""
    if not comm.distributed:
        return [0] * len(scopes)
    return comm.owners([sum(factorisation_cost(s) for s in scope.states) for scope in scopes])


def owned_curvatures(comm: Communicator, scopes: Sequence[Scope], owners: Sequence[int],
                     curvatures: Mapping[str, Curvature]) -> dict[str, Curvature]:
    """The curvatures of the modules of this rank's scopes (all of them in a single process)."""
    if not comm.distributed:
        return dict(curvatures)
    names = {s.pm.name for scope, owner in zip(scopes, owners, strict=True) if owner == comm.rank
             for s in scope.states}
    return {name: c for name, c in curvatures.items() if name in names}


@torch.no_grad()
def broadcast_states(comm: Communicator, states: Sequence[ModuleState], owners: Sequence[int]) -> None:
    """Give every rank the weights, bias and mask of each module as its owner holds them.

    Args:
        comm: the job's communicator (nothing happens in a single process).
        states: the modules.
        owners: the owner rank of each module.
    """
    if not comm.distributed:
        return
    for state, owner in zip(states, owners, strict=True):
        module = state.pm.module
        comm.broadcast_(module.weight.data, owner)
        if module.bias is not None:
            comm.broadcast_(module.bias.data, owner)
        mask = state.mask.to(torch.uint8)
        comm.broadcast_(mask, owner)
        state.mask = mask.to(device=state.mask.device, dtype=torch.bool)
