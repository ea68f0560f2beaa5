"""Wanda: pruning by weights and activations (Sun, Liu, Bair & Kolter, 2023).

Reference: M. Sun, Z. Liu, A. Bair, J. Z. Kolter, "A Simple and Effective Pruning
Approach for Large Language Models", ICLR 2024 (arXiv:2306.11695), Eq. 1.

The score of weight ``W_ij`` is ``|W_ij| · ||X_j||_2``, the norm of input feature ``j``
over all calibration tokens. Weights are compared within each output row (the paper's
"per output" comparison group; ``group="layer"`` compares over the whole matrix), the
lowest-scoring ones are zeroed and nothing else changes (no weight update).

In llm-surgeon's terms the score is the square root of the OBD cost with the diagonal
of ``I ⊗ A``, ``A = X Xᵀ`` (``W_ij² A_jj``), i.e. L-OBD ranked per row instead of
globally. As in the paper, calibration inputs are propagated layer by layer through
the already-pruned layers (:mod:`llm_surgeon.pruning.layerwise`).
"""

from __future__ import annotations

from typing import Any

import attrs
import torch
from torch import Tensor

from llm_surgeon.plugins.baselines._layerwise import (
    LayerwiseMethod,
    nm_kept,
    nm_protected,
    select_lowest,
    write_back,
)
from llm_surgeon.pruning import ModuleState
from llm_surgeon.util import one_of


@attrs.frozen
class WandaConfig:
    """Options of ``wanda``.

    Attributes:
        group: comparison group of the unstructured mask: ``row`` (the paper) or ``layer``.
        true_sequential: prune the adapter's sequential groups of a layer one after the other.
    """

    group: str = attrs.field(default="row", validator=one_of("row", "layer"))
    true_sequential: bool = False


class ColumnNormStatistic:
    """Accumulates ``||X_j||²`` (sum of squares of every input feature over tokens)."""

    def __init__(self, d_in: int) -> None:
        self.sq = torch.zeros(d_in, dtype=torch.float64)
        self.tokens = 0

    def add_batch(self, x: Tensor) -> None:
        """Add inputs ``x: (tokens, d_in)``."""
        if self.sq.device != x.device:
            self.sq = self.sq.to(x.device)
        self.sq += x.to(torch.float64).square().sum(dim=0)
        self.tokens += x.shape[0]

    def norms(self) -> Tensor:
        """``||X_j||_2`` for every input ``j``, ``(d_in,)``."""
        return self.sq.sqrt()


def wanda_scores(weight: Tensor, norms: Tensor) -> Tensor:
    """``|W_ij| · ||X_j||``, ``(d_out, d_in)`` in float64."""
    return weight.detach().to(torch.float64).abs() * norms.to(weight.device, torch.float64)[None, :]


def wanda_mask(
    scores: Tensor,
    *,
    keep: float,
    alive: Tensor | None = None,
    nm: tuple[int, int] | None = None,
    group: str = "row",
) -> Tensor:
    """Which weights Wanda removes.

    Args:
        scores: ``(d_out, d_in)`` Wanda scores.
        keep: fraction of weights to keep.
        alive: ``(d_out, d_in)`` bool; dead weights stay removed and count first.
        nm: ``(n, m)`` remove n of every m inputs; with ``keep > 1 - n/m`` (an
            intermediate shot) only each group's ``n`` lowest are candidates.
        group: ``row`` or ``layer`` comparison group.

    Returns:
        ``(d_out, d_in)`` bool, ``True`` where removed.
    """
    d_out, d_in = scores.shape
    forced = None if alive is None else ~alive.to(scores.device)
    if nm is not None:
        kept = nm_protected(scores, nm[1] - nm[0], nm[1], forced)
        if keep <= nm_kept(nm) + 1e-9:
            return ~kept
        protected = kept
    else:
        protected = None
    per_row = group == "row" or nm is not None
    count = round((1.0 - keep) * (d_in if per_row else d_in * d_out))
    return select_lowest(scores, count, forced=forced, protected=protected, per_row=per_row)


class WandaMethod(LayerwiseMethod):
    """Wanda (Sun et al., 2023): |W| · ||X||, compared per output row, no update."""

    def __init__(self, config: WandaConfig | None = None) -> None:
        super().__init__(config or WandaConfig())

    def make_stat(self, d_in: int) -> ColumnNormStatistic:
        return ColumnNormStatistic(d_in)

    def prune_module(
        self, state: ModuleState, stat: ColumnNormStatistic, keep: float, nm: tuple[int, int] | None
    ) -> dict[str, Any]:
        weight = state.pm.weight.detach()
        scores = wanda_scores(weight, stat.norms())
        removed = wanda_mask(scores, keep=keep, alive=state.mask, nm=nm, group=self.config.group)
        write_back(state, weight, removed)
        return {}


def register_wanda(register) -> None:
    """Register ``wanda`` (call from a ``register_methods`` hook implementation)."""
    register("wanda", WandaMethod, config=WandaConfig,
             description="Wanda: |W|·||X|| per output row, no update")
