"""Semi-structured N:M pruning: groups of ``M`` consecutive inputs of each row.

Registered as ``n:m``; ``--structure 2:4`` maps to ``n=2, m=4``. In every group the
``n`` cheapest weights (single-weight OBS costs on the live sub-matrix; already removed
weights cost 0 and come first) are the group's candidates, so a global threshold can
never take more than ``n`` weights from a group, and taking every candidate (the final
shot) leaves exactly ``m - n`` weights in every group: the final size is ``1 - n/m``.
Removal uses the chunked correlated element updates of the ``element`` structure.
"""

from __future__ import annotations

import weakref

import attrs
import torch
from torch import Tensor

from llm_surgeon.errors import ConfigError
from llm_surgeon.plugins.structures.element import (
    element_candidates,
    full_element_costs,
    remove_weights,
    to_chunk_size,
    to_sweep,
)
from llm_surgeon.pruning import (
    DEFAULT_CHUNK_SIZE,
    CandidateSet,
    ChunkSize,
    ModuleState,
    Scope,
    Solvers,
    Structure,
    Sweep,
    UpdateMode,
)

#: A positive ``int`` (``bool`` is not one).
_POSITIVE = [
    attrs.validators.instance_of(int),
    attrs.validators.not_(attrs.validators.instance_of(bool)),
    attrs.validators.ge(1),
]


@attrs.frozen
class NMConfig:
    """Options of the ``n:m`` structure.

    Attributes:
        n: weights removed from every group at the end.
        m: group size (consecutive inputs of a row); ``0 < n < m``.
        chunk_size: chunk size of the correlated updates (see ``element``).
        sweep: how chunks follow each other (see ``element``).
    """

    n: int = attrs.field(default=2, validator=_POSITIVE)
    m: int = attrs.field(default=4, validator=_POSITIVE)
    chunk_size: ChunkSize = attrs.field(default=DEFAULT_CHUNK_SIZE, converter=to_chunk_size)
    sweep: Sweep = attrs.field(default=None, converter=to_sweep)

    def __attrs_post_init__(self) -> None:
        if not self.n < self.m:
            raise ValueError(f"N:M structure needs 0 < n < m, got n={self.n}, m={self.m}")


class NMStructure(Structure):
    """One group ``elements``: the ``n`` cheapest weights of every group of ``m`` inputs.

    Costs are ordered as ``(d_out, d_w // m, n)`` flattened.

    Args:
        config: the structure's options.
    """

    #: As in the paper's released semi-structured scripts: ``G`` by 0.1, ``A`` by 0.01.
    default_damping_g = 0.1
    default_damping_a = 0.01

    def __init__(self, config: NMConfig | None = None):
        self.config = config or NMConfig()
        # Candidate positions of each module's last candidates() call, for apply().
        self._positions: weakref.WeakKeyDictionary[ModuleState, tuple[int, int, Tensor]] = (
            weakref.WeakKeyDictionary()
        )

    @property
    def n(self) -> int:
        """Weights removed per group at the end."""
        return self.config.n

    @property
    def m(self) -> int:
        """Group size."""
        return self.config.m

    @property
    def implied_size(self) -> float:
        return 1.0 - self.n / self.m

    def _groups(self, state: ModuleState, costs: Tensor) -> Tensor:
        d_out, d_w = costs.shape
        if d_w % self.m:
            raise ConfigError(
                f"{self.n}:{self.m} structure: module {state.pm.name} has {d_w} inputs, "
                f"not a multiple of M={self.m}"
            )
        return costs.reshape(d_out, d_w // self.m, self.m)

    def _candidates(self, state: ModuleState, solvers: Solvers) -> tuple[Tensor, Tensor]:
        costs = full_element_costs(state, solvers)
        groups = self._groups(state, costs)
        dead = self._groups(state, ~state.mask.cpu())
        # Dead weights go first in their group (cost -1 for the ordering only).
        order_costs = torch.where(dead, torch.full_like(groups, -1.0), groups)
        values, positions = torch.topk(order_costs, self.n, dim=2, largest=False, sorted=True)
        positions = positions.to(torch.uint8 if self.m <= 256 else torch.int16)
        self._positions[state] = (id(solvers.curvature(state.pm.name)), int(state.mask.sum()), positions)
        return values.clamp_min(0.0), positions

    def candidates(self, scope: Scope, solvers: Solvers) -> CandidateSet:
        state = scope.state
        values, _ = self._candidates(state, solvers)
        return element_candidates(state, values)

    def apply(
        self,
        scope: Scope,
        solvers: Solvers,
        selected: dict[str, Tensor],
        update: UpdateMode,
    ) -> float:
        state = scope.state
        cached = self._positions.pop(state, None)
        key = (id(solvers.curvature(state.pm.name)), int(state.mask.sum()))
        if cached is not None and cached[:2] == key:
            positions = cached[2]
        else:
            _, positions = self._candidates(state, solvers)
            self._positions.pop(state, None)
        d_out, d_w = state.mask.shape
        chosen = selected["elements"].cpu().to(torch.bool).reshape(positions.shape)
        removed = torch.zeros(d_out, d_w // self.m, self.m, dtype=torch.bool)
        removed.scatter_(2, positions.long(), chosen)
        return remove_weights(state, solvers, removed.reshape(d_out, d_w), update, self.config.chunk_size,
                              self.config.sweep)
