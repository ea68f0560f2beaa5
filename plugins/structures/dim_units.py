"""Removal units of one coupled dimension: which candidates go together, at what cost.

A unit is one candidate (a neuron, a head) or, with ``block > 1``, a block of the
cheapest candidates so that the width kept stays a multiple of ``block``. The ``keep``
most expensive candidates are no units (a minimum width). With ``implied`` groups
(key/value heads), the last unit of a group in cost order carries the group's cost and
weights: the group goes when all its candidates go. ``remaining`` counts weights
exactly as the global threshold selects units: the first ``c`` of a stable sort of
their costs.
"""

from __future__ import annotations

import math

import attrs
import torch
from torch import Tensor


@attrs.frozen
class Implied:
    """Groups of candidates that take another coupling's candidate with them.

    Attributes:
        group: ``(size,)`` long, the group of each candidate.
        costs: ``(groups,)`` cost of removing each group's implied candidate.
        owned: ``(groups,)`` alive weights of each group's implied candidate.
    """

    group: Tensor
    costs: Tensor
    owned: Tensor


@attrs.define(eq=False)
class Units:
    """The units of one scope and the size bookkeeping of the threshold.

    Attributes:
        members: per unit, the candidate indices it removes.
        costs: ``(U,)`` float64 threshold costs of the units.
        removed: ``(U + 1,)`` weights removed by the first ``c`` units in cost order.
        alive: alive weights of the scope now.
        size: candidates of the coupling.
    """

    members: list[Tensor]
    costs: Tensor
    removed: Tensor
    alive: int
    size: int

    def remaining(self, counts: dict[str, int]) -> int:
        """Weights the scope keeps when the ``counts["dims"]`` cheapest units go."""
        return self.alive - int(self.removed[int(counts["dims"])])

    def chosen(self, selected: Tensor) -> Tensor:
        """``(size,)`` bool: the candidates of the selected units."""
        out = torch.zeros(self.size, dtype=torch.bool)
        for unit in selected.cpu().to(torch.bool).nonzero().flatten().tolist():
            out[self.members[unit]] = True
        return out


def _unit_sizes(alive: int, removable: int, block: int) -> list[int]:
    """Sizes of consecutive units: first the remainder that realigns the width to ``block``."""
    if block == 1:
        return [1] * removable
    sizes, left, rest = [], removable, alive % block
    if rest:
        if left < rest:
            return []
        sizes.append(rest)
        left -= rest
    return sizes + [block] * (left // block)


def _key(cost: Tensor, owned: Tensor, normalize: bool) -> Tensor:
    return cost / owned.clamp_min(1).to(cost.dtype) if normalize else cost


def build_units(cost: Tensor, owned: Tensor, alive: int, *, block: int = 1, keep: int = 0,
                normalize: bool = True, implied: Implied | None = None) -> Units:
    """The units of one coupling from its candidates' costs and alive weights.

    Args:
        cost: ``(size,)`` removal cost of each candidate alone.
        owned: ``(size,)`` alive weights of each candidate (0: already removed).
        alive: alive weights of the scope's modules.
        block: units are blocks of this many candidates (kept widths stay multiples).
        keep: candidates never removed (rounded up to a multiple of ``block``).
        normalize: threshold costs per removed weight instead of per unit.
        implied: groups whose last candidate takes an implied candidate with it.
    """
    live = (owned > 0).nonzero().flatten()
    order = live[torch.sort(_key(cost[live], owned[live], normalize), stable=True).indices]
    keep = math.ceil(keep / block) * block
    bounds = torch.tensor([0, *_unit_sizes(len(live), max(0, len(live) - keep), block)]).cumsum(0)
    members = [order[a:b] for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True)]
    unit_cost = torch.stack([cost[m].sum() for m in members]) if members else cost[:0]
    unit_owned = torch.stack([owned[m].sum() for m in members]) if members else owned[:0]
    extra = torch.zeros(len(members), dtype=torch.long)
    if implied is not None and members:
        unit_cost, unit_owned, extra = _carry_implied(members, unit_cost, unit_owned, implied, owned)
    costs = _key(unit_cost, unit_owned + extra, normalize)
    if implied is not None and members:
        costs = _after_group(members, costs, implied.group)
    ranked = torch.sort(costs, stable=True).indices
    removed = torch.cat([torch.zeros(1, dtype=torch.long), (unit_owned + extra)[ranked].cumsum(0)])
    return Units(members, costs, removed, alive, len(cost))


def _carry_implied(members: list[Tensor], unit_cost: Tensor, unit_owned: Tensor, implied: Implied,
                   owned: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Add each group's implied cost to the last of its units, if all its alive candidates are units."""
    unit_of = torch.full((len(owned),), -1, dtype=torch.long)
    for u, m in enumerate(members):
        unit_of[m] = u
    extra = torch.zeros(len(members), dtype=torch.long)
    unit_cost = unit_cost.clone()
    for g in range(len(implied.costs)):
        in_group = (implied.group == g) & (owned > 0)
        units = unit_of[in_group]
        if not len(units) or bool((units < 0).any()) or not int(implied.owned[g]):
            continue
        last = int(units.max())
        unit_cost[last] += implied.costs[g]
        extra[last] += implied.owned[g]
    return unit_cost, unit_owned, extra


def _after_group(members: list[Tensor], costs: Tensor, group: Tensor) -> Tensor:
    """Raise each group's last unit above the group's other units, so it is selected last."""
    costs = costs.clone()
    groups_of = [set(group[m].tolist()) for m in members]
    for u in range(len(members)):
        for v in range(u + 1, len(members)):
            if groups_of[u] & groups_of[v] and costs[v] <= costs[u]:
                costs[v] = torch.nextafter(costs[u], torch.tensor(math.inf, dtype=costs.dtype))
    return costs
