"""Structured pruning of real dimensions: MLP neurons and attention heads (``dims``).

The candidates are the dimensions the architecture adapter declares
(:class:`~llm_surgeon.model.Coupling`): MLP neuron ``i`` of a layer (gate row ``i``, up
row ``i``, down column ``i``; OPT: fc1 row ``i`` with its bias, fc2 column ``i``) and
query head ``h`` (its ``q`` rows and ``o`` columns), which takes its key/value head
(``k`` and ``v`` rows) with it when it is the last of its group to go. Removing them
leaves a model with smaller per-layer widths and fewer heads.

A candidate's cost under a curvature that is block-diagonal across modules is a sum of
its members' joint row or column costs on their live sub-matrices
(:mod:`~llm_surgeon.plugins.structures.dim_costs`); removal applies the correlated
update of the costed members (rows through ``G^-1``, columns through ``A^-1``). One global threshold
runs over all layers, on the cost per removed weight by default (a head removes ~40x
the weights of a neuron; ``normalize=False`` thresholds the plain costs as ``row-col``
does). Dead structures are removed after every shot, like ``row-col``.

By default (``cost="readers"``) a candidate is costed and updated on its reading side
only: the columns of the modules that consume the dimension (``down``, ``o``, ``fc2``),
whose removal alone already makes the dimension's output unread. Its rows (``gate``/``up``,
``q``/``k``/``v``, ``fc1``) are then dead: they are zeroed without an update and cost
nothing, instead of moving the live rows to stand in for an output nobody reads.
``cost="members"`` sums the costs of all members and updates each of them (the
block-diagonal quadratic model taken literally; much worse on SmolLM2, see the README).
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import torch
from torch import Tensor

from llm_surgeon.errors import ConfigError
from llm_surgeon.model import ArchitectureAdapter
from llm_surgeon.plugins.structures.dim_costs import dimension_costs, owned, removal_lines
from llm_surgeon.plugins.structures.dim_units import Implied, Units, build_units
from llm_surgeon.plugins.structures.row_col import SIZE_MEASURES, remove_rows_cols
from llm_surgeon.pruning import (
    CandidateSet,
    Coupling,
    ModuleState,
    Scope,
    Solvers,
    Structure,
    UpdateMode,
)

_NON_NEGATIVE = [attrs.validators.instance_of(int), attrs.validators.ge(0)]

#: Values of the ``cost`` option: only the reading columns, or every member's lines.
DIM_COSTS = ("readers", "members")


@attrs.frozen
class DimsConfig:
    """Options of the ``dims`` structure.

    Attributes:
        multiple: MLP widths kept per layer are multiples of this (e.g. 8, 64, 256):
            neurons go in blocks of the cheapest ``multiple``.
        min_width: MLP neurons every layer keeps at least (rounded up to ``multiple``).
        min_heads: query heads every layer keeps at least.
        normalize: threshold on the cost per removed weight (``True``) or on the cost
            of each candidate (``False``).
        size: what the targets count, ``weights`` or ``real`` (see ``row-col``; the two
            differ only where propagation or pre-existing zeros leave scattered lines).
        cost: ``readers`` (only the columns that read the dimension are costed and
            updated; its rows are zeroed as dead) or ``members`` (the sum of every
            member's row and column costs, each member removed with its update).
    """

    multiple: int = attrs.field(default=1, validator=[attrs.validators.instance_of(int),
                                                      attrs.validators.ge(1)])
    min_width: int = attrs.field(default=0, validator=_NON_NEGATIVE)
    min_heads: int = attrs.field(default=0, validator=_NON_NEGATIVE)
    normalize: bool = attrs.field(default=True, validator=attrs.validators.instance_of(bool))
    size: str = attrs.field(default="weights", validator=attrs.validators.in_(SIZE_MEASURES))
    cost: str = attrs.field(default="readers", validator=attrs.validators.in_(DIM_COSTS))


class DimsStructure(Structure):
    """One group ``dims`` per scope (an MLP or an attention block): its removal units.

    Args:
        config: the structure's options.
    """

    default_damping_g = 0.1
    default_damping_a = 0.1
    needs_couplings = True
    structured = True
    masks_from_selection = False  # masks_after reads the units candidates() found

    def __init__(self, config: DimsConfig | None = None):
        self.config = config or DimsConfig()
        # Units of each scope's last candidates() call, for masks_after() and apply().
        self._units: dict[str, tuple[tuple[tuple[int, int], ...], Units]] = {}

    @property
    def propagates(self) -> bool:
        return True

    @property
    def size_measure(self) -> str:
        return self.config.size

    def scopes(self, states: Sequence[ModuleState], adapter: ArchitectureAdapter,
               couplings: Sequence[Coupling] = ()) -> list[Scope]:
        """One scope per coupling that no other implies, with the couplings it implies."""
        by_module = {s.pm.name: s for s in states}
        implied: dict[str, list[Coupling]] = {}
        for c in couplings:
            if c.implied_by is not None:
                implied.setdefault(c.implied_by[0], []).append(c)
        scopes = []
        for c in couplings:
            if c.implied_by is not None:
                continue
            if self.config.cost == "readers" and not any(m.axis == "col" for m in c.members):
                raise ConfigError(f"dims: cost=readers needs coupling {c.name} to have a column "
                                  "member (a module reading the dimension); use cost=members")
            coupled = (c, *implied.get(c.name, ()))
            names = list(dict.fromkeys(m.module for k in coupled for m in k.members))
            if all(n in by_module for n in names):
                scopes.append(Scope(tuple(by_module[n] for n in names), c, tuple(coupled[1:])))
        if not scopes:
            raise ConfigError(
                f"structure 'dims' needs the architecture adapter ({type(adapter).__name__}) to "
                "declare couplings of its prunable modules (ArchitectureAdapter.couplings)"
            )
        return scopes

    def _block_and_keep(self, coupling: Coupling) -> tuple[int, int]:
        if coupling.kind == "mlp":
            return self.config.multiple, self.config.min_width
        if coupling.kind == "heads":
            return 1, self.config.min_heads
        return 1, 0

    def _build(self, scope: Scope, solvers: Solvers) -> Units:
        states = {s.pm.name: s for s in scope.states}
        coupling = scope.coupling
        assert coupling is not None, "dims scopes always have a coupling"
        readers = self.config.cost == "readers"
        implied = None
        for kv in scope.implied:  # grouped-query attention: one group of n query heads per kv head
            if implied is not None:
                raise ConfigError(f"dims: coupling {coupling.name} implies more than one coupling")
            n = coupling.size // kv.size
            implied = Implied(torch.arange(coupling.size) // n,
                              dimension_costs(kv, states, solvers, readers_only=readers), owned(kv, states))
        block, keep = self._block_and_keep(coupling)
        return build_units(dimension_costs(coupling, states, solvers, readers_only=readers),
                           owned(coupling, states),
                           sum(s.remaining for s in scope.states), block=block, keep=keep,
                           normalize=self.config.normalize, implied=implied)

    @staticmethod
    def _key(scope: Scope) -> tuple[tuple[int, int], ...]:
        """Identifies the scope's masks: a changed or replaced mask invalidates its units."""
        return tuple((id(s.mask), s.mask._version) for s in scope.states)

    def candidates(self, scope: Scope, solvers: Solvers) -> CandidateSet:
        units = self._build(scope, solvers)
        self._units[scope.name] = (self._key(scope), units)
        return CandidateSet(costs={"dims": units.costs}, remaining=units.remaining)

    def _cached(self, scope: Scope) -> Units:
        key, units = self._units.get(scope.name, (None, None))
        if units is None or key != self._key(scope):
            raise RuntimeError(f"dims: candidates() of scope {scope.name} must come first in the shot")
        return units

    def _removal(self, scope: Scope, selected: dict[str, Tensor]) -> dict[str, tuple[Tensor, Tensor]]:
        """Rows and columns (bool, full layout) each module of the scope loses."""
        units = self._cached(scope)
        chosen = units.chosen(selected["dims"])
        lines = removal_lines(scope.coupling, chosen)
        for kv in scope.implied:
            n = scope.coupling.size // kv.size
            gone = chosen | (owned(scope.coupling, {s.pm.name: s for s in scope.states}) == 0)
            lines.update(removal_lines(kv, gone.reshape(kv.size, n).all(dim=1)))
        out = {}
        for s in scope.states:
            rows, cols = lines.get(s.pm.name, (None, None))
            d_out, d_w = s.mask.shape
            out[s.pm.name] = (_as_bool(rows, d_out), _as_bool(cols, d_w))
        return out

    def max_candidate_weights(self, scope: Scope) -> int:
        shapes = {s.pm.name: s.pm.shape for s in scope.states}

        def weights(c: Coupling) -> int:
            return sum(m.width * shapes[m.module][1 if m.axis == "row" else 0] for m in c.members)

        block, _ = self._block_and_keep(scope.coupling)
        return block * weights(scope.coupling) + sum(weights(c) for c in scope.implied)

    def masks_after(self, scope: Scope, selected: dict[str, Tensor]) -> list[Tensor]:
        removal = self._removal(scope, selected)
        return [_without(s.mask, *removal[s.pm.name]) for s in scope.states]

    def apply(self, scope: Scope, solvers: Solvers, selected: dict[str, Tensor], update: UpdateMode) -> float:
        if scope.name not in self._units:
            self.candidates(scope, solvers)
        removal = self._removal(scope, selected)
        del self._units[scope.name]
        if self.config.cost == "members":
            return sum(remove_rows_cols(s, solvers, *removal[s.pm.name], update) for s in scope.states)
        cost = 0.0
        for s in scope.states:  # readers: columns with their update; rows are dead, zeroed
            rows, cols = removal[s.pm.name]
            cost += remove_rows_cols(s, solvers, torch.zeros_like(rows), cols, update)
            _zero_rows(s, rows)
        return cost


def _without(mask: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """``mask`` with ``rows`` and ``cols`` (bool) removed; ``mask`` itself if nothing goes."""
    if not bool(rows.any() or cols.any()):
        return mask
    out = mask.cpu().clone()
    out[rows] = False
    out[:, cols] = False
    return out


def _zero_rows(state: ModuleState, rows: Tensor) -> None:
    """Zero the live ones of rows ``(d_out,)`` (bool) and their bias, without an update."""
    mask = state.mask.cpu()
    rows = rows & mask.any(dim=1)
    if not bool(rows.any()):
        return
    theta = state.theta()
    theta[rows.to(theta.device)] = 0
    state.mask = (mask & ~rows[:, None]).to(state.mask.device)
    state.set_theta(theta)


def _as_bool(index: Tensor | None, n: int) -> Tensor:
    out = torch.zeros(n, dtype=torch.bool)
    if index is not None:
        out[index] = True
    return out
