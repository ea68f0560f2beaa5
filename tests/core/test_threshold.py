"""The global threshold hits size targets, counting row/column overlap."""

from __future__ import annotations

import pytest
import torch

from llm_surgeon.pruning import CandidateSet, global_threshold, targets


def _rowcol(rows: int, cols: int, gen: torch.Generator) -> CandidateSet:
    return CandidateSet(
        costs={"rows": torch.rand(rows, generator=gen), "cols": torch.rand(cols, generator=gen)},
        remaining=lambda c, R=rows, C=cols: (R - c["rows"]) * (C - c["cols"]),
    )


def _elements_with(costs: torch.Tensor) -> CandidateSet:
    n = len(costs)
    return CandidateSet(costs={"elements": costs}, remaining=lambda c: n - c["elements"])


def _elements(n: int, gen: torch.Generator) -> CandidateSet:
    return CandidateSet(costs={"elements": torch.rand(n, generator=gen)},
                        remaining=lambda c, n=n: n - c["elements"])


@pytest.mark.parametrize("target", [0.95, 0.8, 0.5, 0.21])
def test_rowcol_threshold_within_one_candidate(target):
    gen = torch.Generator().manual_seed(0)
    shapes = [(12, 7), (5, 20), (9, 9)]
    cands = [_rowcol(r, c, gen) for r, c in shapes]
    total = sum(r * c for r, c in shapes)
    want = round(target * total)
    selections, kept = global_threshold(cands, want)
    # The reported size matches the selection, counting overlaps.
    recount = sum((r - int(s["rows"].sum())) * (c - int(s["cols"].sum()))
                  for (r, c), s in zip(shapes, selections, strict=True))
    assert recount == kept
    assert abs(kept - want) <= max(max(r, c) for r, c in shapes)


def test_threshold_is_global_and_cheapest_first():
    gen = torch.Generator().manual_seed(1)
    cands = [_elements(50, gen), _elements(30, gen)]
    selections, kept = global_threshold(cands, 40)
    assert kept == 40
    chosen = torch.cat([c.costs["elements"][s["elements"]] for c, s in zip(cands, selections, strict=True)])
    rest = torch.cat([c.costs["elements"][~s["elements"]] for c, s in zip(cands, selections, strict=True)])
    assert chosen.max() <= rest.min()


def test_ties_resolved_one_by_one():
    cands = [CandidateSet({"elements": torch.full((10,), 0.5)}, lambda c: 10 - c["elements"]),
             CandidateSet({"elements": torch.ones(10)}, lambda c: 10 - c["elements"])]
    for want in range(0, 21):
        _, kept = global_threshold(cands, want)
        assert kept == want


def test_tied_selection_takes_the_first_positions_like_a_stable_sort():
    # Costs with many ties: the selection must equal the first `kept` entries of a
    # stable argsort, whatever the number of candidates taken.
    costs = torch.tensor([0.3, 0.1, 0.3, 0.2, 0.1, 0.3, 0.05, 0.2, 0.3], dtype=torch.float64)
    order = torch.sort(costs, stable=True).indices
    for want in range(len(costs) + 1):
        cands = [CandidateSet({"elements": costs}, lambda c: len(costs) - c["elements"])]
        selections, kept = global_threshold(cands, want)
        expected = torch.zeros(len(costs), dtype=torch.bool)
        expected[order[: len(costs) - kept]] = True
        assert kept == want
        assert torch.equal(selections[0]["elements"], expected)


def test_dead_candidates_stay_selected():
    # Zero-cost candidates (already removed) are always selected.
    costs = torch.tensor([0.0, 0.0, 0.5, 0.7, 0.9])
    cands = [CandidateSet({"elements": costs}, lambda c: 5 - c["elements"])]
    selections, kept = global_threshold(cands, 4)
    assert kept == 3 and selections[0]["elements"][:2].all()


def test_linear_schedule_ends_at_final():
    sizes = targets("linear", 5, 0.5)
    assert sizes == pytest.approx([0.9, 0.8, 0.7, 0.6, 0.5])
    assert targets("cubic", 3, 0.7)[-1] == 0.7


def test_float32_costs_select_like_their_float64_values():
    # Element costs come in float32 (half the memory); mixing them with float64 groups
    # must select exactly what the same values in float64 select.
    gen = torch.Generator().manual_seed(3)
    c32 = [torch.rand(400, generator=gen), torch.rand(300, generator=gen)]
    c32[1][::7] = c32[1][0]  # ties

    def sets(costs):
        return [_elements_with(c) for c in costs]

    for want in (0, 123, 350, 699, 700):
        sel32, kept32 = global_threshold(sets(c32), want)
        sel64, kept64 = global_threshold(sets([c.double() for c in c32]), want)
        mixed, kept_mixed = global_threshold(sets([c32[0], c32[1].double()]), want)
        assert kept32 == kept64 == kept_mixed == want
        for a, b, m in zip(sel32, sel64, mixed, strict=True):
            assert torch.equal(a["elements"], b["elements"]) and torch.equal(a["elements"], m["elements"])


def test_float32_costs_are_not_copied_to_float64():
    from llm_surgeon.pruning.threshold import _prepare

    costs = torch.rand(100)
    groups = _prepare([CandidateSet({"elements": costs}, lambda k: 100 - k["elements"])])
    assert groups[0].costs.dtype == torch.float32 and groups[0].sorted_costs.dtype == torch.float32


def _kept(selections, n: int) -> int:
    return n - int(selections[0]["elements"].sum())


@pytest.mark.parametrize("target", [900, 600, 250])
def test_threshold_after_counts_what_the_follow_up_frees(target):
    from llm_surgeon.pruning import threshold_after

    gen = torch.Generator().manual_seed(1)
    n = 1000
    cands = [_elements(n, gen)]

    def size_after(selections):  # a follow-up that frees a fifth of what was removed, on top
        kept = _kept(selections, n)
        return kept - (n - kept) // 5

    selections, size = threshold_after(cands, target, size_after, upper=n)
    assert size == size_after(selections)
    assert abs(size - target) <= 1
    naive, _ = global_threshold(cands, target)
    assert size_after(naive) < target - 10  # without the search, the follow-up overshoots


@pytest.mark.parametrize("target", [950, 500])
def test_threshold_after_reaches_a_target_measured_above_the_kept_weights(target):
    from llm_surgeon.pruning import threshold_after

    gen = torch.Generator().manual_seed(2)
    n = 1000
    cands = [_elements(n, gen)]

    def size_after(selections):  # e.g. index vectors of a compact export
        kept = _kept(selections, n)
        return kept + (n - kept) // 3

    selections, size = threshold_after(cands, target, size_after, upper=n)
    assert abs(size - target) <= 1
