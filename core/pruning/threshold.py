"""One global threshold over the removal candidates of every module.

Each module contributes groups of candidates with costs (rows, columns, elements,
N:M groups...). Selecting, in every group, the candidates whose cost is at most a
threshold ``tau`` leaves ``sum_m remaining_m(counts_m(tau))`` weights. We find the
threshold whose size is closest to the target by bisection on ``tau`` over per-group
sorted costs (no global sort), then resolve ties candidate by candidate, so the
achieved size is within one candidate's worth of weights of the target.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import attrs
import torch
from torch import Tensor

from llm_surgeon.pruning.structures import CandidateSet

#: Above this many tied candidates, a tie block is taken whole instead of one by one.
_MAX_TIES = 100_000


@attrs.define(eq=False)
class _Group:
    module: int
    name: str
    costs: Tensor  # flat, float32 or float64, CPU (the candidate set's own tensor when it already is)
    sorted_costs: Tensor  # ascending copy of ``costs``

    def first(self, count: int) -> Tensor:
        """Bool selection of the ``count`` cheapest candidates, ties broken by position.

        The same selection as the first ``count`` entries of a stable argsort, without
        keeping an index array as large as the costs.
        """
        if count == 0:
            return torch.zeros(len(self.costs), dtype=torch.bool)
        edge = self.sorted_costs[count - 1]
        selected = self.costs < edge
        missing = count - int(selected.sum())
        if missing:
            selected[(self.costs == edge).nonzero().flatten()[:missing]] = True
        return selected


def _prepare(candidates: Sequence[CandidateSet]) -> list[_Group]:
    groups = []
    for m, cset in enumerate(candidates):
        for name, costs in cset.costs.items():
            c = costs.detach().flatten().to("cpu")
            if c.dtype not in (torch.float32, torch.float64):
                c = c.to(torch.float64)
            if not torch.isfinite(c).all():
                raise FloatingPointError(f"non-finite candidate costs in module #{m}, group {name!r}")
            groups.append(_Group(m, name, c, torch.sort(c).values))
    return groups


class _Counter:
    """Evaluates the model size for a given number of selected candidates per group."""

    def __init__(self, candidates: Sequence[CandidateSet], groups: list[_Group]):
        self.candidates = candidates
        self.groups = groups
        self.by_module: dict[int, list[int]] = {}
        for gi, g in enumerate(groups):
            self.by_module.setdefault(g.module, []).append(gi)

    def counts_at(self, tau: float) -> list[int]:
        return [int(torch.searchsorted(g.sorted_costs, tau, right=True)) for g in self.groups]

    def module_size(self, m: int, counts: list[int]) -> int:
        return int(self.candidates[m].remaining({self.groups[gi].name: counts[gi] for gi in self.by_module[m]}))

    def size(self, counts: list[int]) -> int:
        return sum(self.module_size(m, counts) for m in range(len(self.candidates)))


def global_threshold(candidates: Sequence[CandidateSet], target_weights: int) -> tuple[list[dict[str, Tensor]], int]:
    """Select candidates in every module so that the model keeps about ``target_weights``.

    Args:
        candidates: one candidate set per module.
        target_weights: number of prunable weights to keep in total.

    Returns:
        Per module, group name -> bool selection aligned with the group's costs; and
        the number of weights kept by that selection.
    """
    groups = _prepare(candidates)
    counter = _Counter(candidates, groups)
    # Zero-cost candidates (already removed, or zero weights) are always selected.
    lo, hi = 0.0, max((float(g.sorted_costs[-1]) for g in groups if len(g.sorted_costs)), default=0.0)
    counts_lo = counter.counts_at(lo)
    if counter.size(counts_lo) <= target_weights:
        counts = counts_lo
    else:
        counts_hi = counter.counts_at(hi)
        if counter.size(counts_hi) > target_weights:
            counts = counts_hi  # even removing every candidate keeps too much
        else:
            # Invariant: size(lo) > target >= size(hi).
            for _ in range(200):
                mid = 0.5 * (lo + hi)
                if not (lo < mid < hi):
                    break
                counts_mid = counter.counts_at(mid)
                if counter.size(counts_mid) > target_weights:
                    lo, counts_lo = mid, counts_mid
                else:
                    hi, counts_hi = mid, counts_mid
            counts = _resolve_ties(counter, counts_lo, counts_hi, target_weights)
    selections: list[dict[str, Tensor]] = [dict() for _ in candidates]
    for g, c in zip(groups, counts, strict=True):
        selections[g.module][g.name] = g.first(c)
    return selections, counter.size(counts)


def _resolve_ties(counter: _Counter, counts_lo: list[int], counts_hi: list[int], target: int) -> list[int]:
    """Add the candidates between the two thresholds one at a time, cheapest first."""
    pending = []
    for gi, (a, b) in enumerate(zip(counts_lo, counts_hi, strict=True)):
        g = counter.groups[gi]
        pending.extend((float(g.sorted_costs[k]), gi) for k in range(a, b))
    if len(pending) > _MAX_TIES:
        return counts_hi  # a huge block of equal costs: take it whole
    pending.sort()
    counts = list(counts_lo)
    size = counter.size(counts)
    for _, gi in pending:
        m = counter.groups[gi].module
        before = counter.module_size(m, counts)
        counts[gi] += 1
        new_size = size - before + counter.module_size(m, counts)
        if new_size <= target:
            # Keep whichever of the two is closer to the target.
            if target - new_size > size - target:
                counts[gi] -= 1
            return counts
        size = new_size
    return counts


def threshold_after(
    candidates: Sequence[CandidateSet],
    target: int,
    size_after: Callable[[list[dict[str, Tensor]]], int],
    *,
    upper: int,
    tolerance: int = 0,
    iterations: int = 16,
) -> tuple[list[dict[str, Tensor]], int]:
    """A global threshold whose size *as measured after a follow-up* is closest to ``target``.

    ``size_after(selections)`` measures the model once the selection is removed and a
    follow-up has run: dead-structure propagation frees more weights (so the weights
    it frees count toward the target instead of coming on top), and the size may be
    counted differently (the parameters of a compact export). It must grow with the
    threshold's own target ``t`` (weights kept by the selection), which is searched in
    ``[0, upper]``: a first step of the size's error from ``t = target``, doubled until
    the target is bracketed, then bisection, until the measured size is within
    ``tolerance`` weights of the target (or ``iterations`` more thresholds were tried).

    Returns:
        The selections and their measured size.
    """
    best: tuple[int, list[dict[str, Tensor]], int] | None = None

    def measure(t: int) -> int:
        nonlocal best
        selections, _ = global_threshold(candidates, t)
        size = size_after(selections)
        if best is None or abs(size - target) < best[0]:
            best = (abs(size - target), selections, size)
        return size

    t, size = target, measure(target)
    below = t if size <= target else None  # a threshold target measured at or below the target
    above = t if size > target else None
    step = target - size
    for _ in range(iterations):
        if abs(size - target) <= tolerance or (below is not None and above is not None and above - below <= 1):
            break
        if below is not None and above is not None:
            t = (below + above) // 2
        else:
            nxt = min(max(t + step, 0), upper)
            if nxt == t:
                break
            t, step = nxt, 2 * step
        size = measure(t)
        if size <= target:
            below = t if below is None else max(below, t)
        else:
            above = t if above is None else min(above, t)
    assert best is not None
    return best[1], best[2]
