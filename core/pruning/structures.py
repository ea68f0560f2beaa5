"""Structures: which groups of weights are candidates for removal, and how they go.

The shot loop asks a structure to split the prunable modules into *scopes* (modules
whose candidates it costs and removes together: one module for ``row-col``, ``element``
and ``N:M``; an MLP or attention block when a candidate spans modules), asks for the
costs of every scope's candidates, picks one global threshold over all scopes (counting
overlaps through :meth:`CandidateSet.remaining`), and asks the structure to remove the
selection. Curvatures and damped solvers come from the shot's
:class:`~llm_surgeon.solver.Solvers`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from enum import Enum

import attrs
from torch import Tensor

from llm_surgeon.model.adapters import ArchitectureAdapter
from llm_surgeon.model.couplings import Coupling
from llm_surgeon.model.state import ModuleState
from llm_surgeon.solver.live import Solvers


class UpdateMode(str, Enum):
    """How remaining weights are updated when others are removed."""

    NONE = "none"  #: only zero the removed weights
    FULL = "full"  #: optimal correlated update  -F^-1 E_K^T (E_K F^-1 E_K^T)^-1 E_K theta


@attrs.define(eq=False)
class CandidateSet:
    """Removal candidates of one scope.

    Attributes:
        costs: group name -> 1-D tensor of candidate costs (e.g. ``rows``, ``cols``).
            Candidates that are already removed must have cost 0.
        remaining: given the number of selected candidates in each group (those
            below the global threshold), the number of weights the scope keeps.
            Must be non-increasing in every count.
    """

    costs: dict[str, Tensor]
    remaining: Callable[[dict[str, int]], int]


@attrs.frozen
class Scope:
    """Modules whose candidates a structure costs and removes together.

    Attributes:
        states: the modules' states (one for per-module structures).
        coupling: the shared dimension the candidates are slices of, if any.
        implied: couplings whose candidates go with groups of this one's (the
            key/value heads of a block of query heads, :attr:`Coupling.implied_by`).
    """

    states: tuple[ModuleState, ...]
    coupling: Coupling | None = None
    implied: tuple[Coupling, ...] = ()

    @property
    def state(self) -> ModuleState:
        """The only module of a per-module scope."""
        if len(self.states) != 1:
            raise ValueError(f"scope {self.name} spans {len(self.states)} modules, not one")
        return self.states[0]

    @property
    def name(self) -> str:
        """The coupling's name, or the module's."""
        return self.coupling.name if self.coupling is not None else self.states[0].pm.name


class Structure(ABC):
    """A family of removable weight groups: rows and columns, N:M groups, elements, dims.

    Attributes:
        default_damping_g, default_damping_a: relative damping of ``G`` and ``A`` used
            when the run does not set ``damping_g`` / ``damping_a``.
        needs_couplings: the structure's scopes come from the adapter's couplings.
        structured: removals are whole rows and columns of weight matrices, so a compact
            export (``--save compact``) can drop them physically.
    """

    default_damping_g: float = 0.1
    default_damping_a: float = 0.1
    #: Whether the structure needs the adapter to declare couplings (checked before loading).
    needs_couplings: bool = False
    structured: bool = False

    @property
    def implied_size(self) -> float | None:
        """Final fraction of weights kept that the structure itself fixes (N:M), else ``None``."""
        return None

    @property
    def size_measure(self) -> str:
        """What the shot targets count: ``weights`` (alive prunable weights) or ``real``
        (the prunable weights of a compact export, :mod:`llm_surgeon.pruning.compact`;
        needs :meth:`masks_after`)."""
        return "weights"

    @property
    def propagates(self) -> bool:
        """Whether runs remove dead structures after every shot (:mod:`llm_surgeon.pruning.dead`).

        A structure that says so implements :meth:`masks_after`, so that the weights
        propagation will free count toward the shot's target.
        """
        return False

    def scopes(self, states: Sequence[ModuleState], adapter: ArchitectureAdapter,
               couplings: Sequence[Coupling] = ()) -> list[Scope]:
        """The scopes of a model's prunable modules; by default one per module.

        Args:
            states: the prunable modules.
            adapter: the model's architecture adapter.
            couplings: the dimensions the adapter declares for the model
                (:meth:`~llm_surgeon.model.ArchitectureAdapter.couplings`).
        """
        return [Scope((state,)) for state in states]

    def max_candidate_weights(self, scope: Scope) -> int:
        """The most weights one candidate of ``scope`` removes: how close a threshold can get.

        The default is a whole row or column of the scope's largest module.
        """
        return max(max(s.pm.shape) for s in scope.states)

    def masks_after(self, scope: Scope, selected: dict[str, Tensor]) -> list[Tensor]:
        """The masks ``apply(scope, solvers, selected, ...)`` will leave, without removing anything.

        Returns:
            One ``(d_out, d_w)`` bool mask per module of the scope, in order.
        """
        raise NotImplementedError(f"{type(self).__name__} does not predict its masks")

    @abstractmethod
    def candidates(self, scope: Scope, solvers: Solvers) -> CandidateSet:
        """Costs of removing each candidate of ``scope`` (on the live sub-matrices)."""

    @abstractmethod
    def apply(
        self,
        scope: Scope,
        solvers: Solvers,
        selected: dict[str, Tensor],
        update: UpdateMode,
    ) -> float:
        """Remove the selected candidates, updating masks and weights in place.

        Args:
            scope: the modules; their weights and masks are changed in place.
            solvers: the shot's curvatures and solvers (full-size curvatures; restrict
                them to the live part through ``solvers.solver(name, view)``).
            selected: group name -> bool tensor aligned with ``candidates().costs``.
            update: whether to apply the correlated update to the remaining weights.

        Returns:
            The predicted increase of the quadratic loss model.
        """
