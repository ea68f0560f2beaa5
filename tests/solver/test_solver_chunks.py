"""Planning chunks of removed weights: whole rows where possible."""

from __future__ import annotations

import pytest
import torch

from llm_surgeon.solver import plan_chunks


def _mask(counts: list[int], width: int = 10) -> torch.Tensor:
    mask = torch.zeros(len(counts), width, dtype=torch.bool)
    for r, c in enumerate(counts):
        mask[r, :c] = True
    return mask


def _chunks(counts, chunk_size):
    flat, bounds = plan_chunks(_mask(counts), chunk_size)
    assert bounds[0] == 0 and bounds[-1] == len(flat) == sum(counts)
    return [b - a for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def test_none_is_one_chunk():
    assert _chunks([3, 0, 2], None) == [5]


def test_row_is_one_chunk_per_nonempty_row():
    assert _chunks([3, 0, 2, 1], "row") == [3, 2, 1]


def test_rows_are_packed_and_large_rows_split():
    assert _chunks([2, 2, 2], 4) == [4, 2]
    assert _chunks([3, 3], 4) == [3, 3]
    assert _chunks([9, 1], 4) == [4, 4, 2]  # the row of 9 is split; its rest shares with the next row
    assert _chunks([1, 0, 0, 1], 2) == [2]


def test_flat_indices_are_row_major():
    mask = _mask([2, 1])
    flat, _ = plan_chunks(mask, "row")
    assert flat.tolist() == [0, 1, 10]


def test_empty_and_invalid():
    flat, bounds = plan_chunks(torch.zeros(3, 3, dtype=torch.bool), 4)
    assert len(flat) == 0 and bounds == [0]
    with pytest.raises(ValueError, match="chunk_size"):
        plan_chunks(_mask([1]), 0)


def test_whole_rows_are_packed_and_split_only_beyond_the_limit():
    def chunks(counts, chunk_size, whole_rows):
        flat, bounds = plan_chunks(_mask(counts, width=12), chunk_size, whole_rows=whole_rows)
        assert bounds[0] == 0 and bounds[-1] == len(flat) == sum(counts)
        return [b - a for a, b in zip(bounds[:-1], bounds[1:], strict=True)]

    assert chunks([2, 2, 2], 4, 8) == [4, 2]
    assert chunks([3, 6, 1], 4, 8) == [3, 6, 1]  # the row of 6 stays whole
    assert chunks([9, 1], 4, 8) == [8, 1, 1]  # beyond 8: pieces of 8
    assert chunks([12, 1], 4, 5) == [5, 5, 2, 1]
    assert chunks([1, 0, 0, 1], 2, 5) == [2]
