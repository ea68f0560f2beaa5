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
        candidates: ``(k,)`` the candidates that are in a unit, unit by unit.
        unit: ``(k,)`` the unit of each of them.
        costs: ``(U,)`` float64 threshold costs of the units.
        removed: ``(U + 1,)`` weights removed by the first ``c`` units in cost order.
        alive: alive weights of the scope now.
        size: candidates of the coupling.
    """

    candidates: Tensor
    unit: Tensor
    costs: Tensor
    removed: Tensor
    alive: int
    size: int

    @property
    def members(self) -> list[Tensor]:
        """Per unit, the candidate indices it removes."""
        counts = torch.bincount(self.unit, minlength=len(self.costs)).tolist()
        return list(torch.split(self.candidates, counts))

    def remaining(self, counts: dict[str, int]) -> int:
        """Weights the scope keeps when the ``counts["dims"]`` cheapest units go."""
        return self.alive - int(self.removed[int(counts["dims"])])

    def chosen(self, selected: Tensor) -> Tensor:
        """``(size,)`` bool: the candidates of the selected units."""
        out = torch.zeros(self.size, dtype=torch.bool)
        out[self.candidates[selected.cpu().to(torch.bool)[self.unit]]] = True
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
    sizes = torch.tensor(_unit_sizes(len(live), max(0, len(live) - keep), block), dtype=torch.long)
    units = len(sizes)
    unit = torch.repeat_interleave(torch.arange(units), sizes)
    flat = order[: len(unit)]  # the cheapest candidates, unit by unit
    unit_cost = torch.zeros(units, dtype=cost.dtype).index_add_(0, unit, cost[flat])
    unit_owned = torch.zeros(units, dtype=torch.long).index_add_(0, unit, owned[flat].long())
    extra = torch.zeros(units, dtype=torch.long)
    if implied is not None and units:
        unit_cost, extra = _carry_implied(flat, unit, unit_cost, implied, owned)
    costs = _key(unit_cost, unit_owned + extra, normalize)
    if implied is not None and units:
        costs = _after_group(flat, unit, costs, implied.group)
    ranked = torch.sort(costs, stable=True).indices
    removed = torch.cat([torch.zeros(1, dtype=torch.long), (unit_owned + extra)[ranked].cumsum(0)])
    return Units(flat, unit, costs, removed, alive, len(cost))


def _carry_implied(flat: Tensor, unit: Tensor, unit_cost: Tensor, implied: Implied,
                   owned: Tensor) -> tuple[Tensor, Tensor]:
    """Add each group's implied cost and weights to the last of its units (if all its alive
    candidates are in units)."""
    unit_of = torch.full((len(owned),), -1, dtype=torch.long)
    unit_of[flat] = unit
    extra = torch.zeros(len(unit_cost), dtype=torch.long)
    unit_cost = unit_cost.clone()
    for g in range(len(implied.costs)):
        units = unit_of[(implied.group == g) & (owned > 0)]
        if not len(units) or bool((units < 0).any()) or not int(implied.owned[g]):
            continue
        last = int(units.max())
        unit_cost[last] += implied.costs[g]
        extra[last] += implied.owned[g]
    return unit_cost, extra


def _after_group(flat: Tensor, unit: Tensor, costs: Tensor, group: Tensor) -> Tensor:
    """Raise each group's units to cost more than the group's earlier units, so that its last
    unit (which carries the implied candidate) is selected last."""
    costs = costs.clone()
    groups_of = [set() for _ in range(len(costs))]
    for candidate, u in zip(flat.tolist(), unit.tolist(), strict=True):
        groups_of[u].add(int(group[candidate]))
    for u in range(len(costs)):
        for v in range(u + 1, len(costs)):
            if groups_of[u] & groups_of[v] and costs[v] <= costs[u]:
                costs[v] = torch.nextafter(costs[u], torch.tensor(math.inf, dtype=costs.dtype))
    return costs
