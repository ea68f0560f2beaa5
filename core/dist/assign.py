"""Owner ranks for per-module work, balanced by its cost."""

from __future__ import annotations

import heapq
from collections.abc import Sequence


def assign_owners(costs: Sequence[float], size: int) -> list[int]:
    """Give each work item to a rank so that the ranks' total costs are balanced.

    Longest processing time first: items in decreasing cost (ties by position) go to
    the rank with the smallest total so far (ties by rank). Deterministic, so every rank
    computes the same assignment from the same costs; the largest total is at most 4/3
    of the optimum (Graham, 1969).

    Args:
        costs: non-negative cost of each item (e.g. ``d_out^3 + d_in^3`` for a module's
            factorisations).
        size: number of ranks.

    Returns:
        The owner rank of each item, aligned with ``costs``.
    """
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    owners = [0] * len(costs)
    if size == 1:
        return owners
    loads = [(0.0, rank) for rank in range(size)]
    for index in sorted(range(len(costs)), key=lambda i: (-float(costs[i]), i)):
        load, rank = heapq.heappop(loads)
        owners[index] = rank
        heapq.heappush(loads, (load + float(costs[index]), rank))
    return owners
