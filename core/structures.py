"""Structure handlers: which groups of weights are candidates for removal, and how.

The pruner asks each handler for the costs of its candidates in every module, picks
one global threshold over all modules (counting overlaps through
:meth:`CandidateSet.remaining`), and asks the handler to remove the selection.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from enum import Enum

import attrs
import torch
from torch import Tensor

from llm_surgeon.adapters import PrunableModule
from llm_surgeon.curvature import Curvature


class UpdateMode(str, Enum):
    """How remaining weights are updated when others are removed."""

    NONE = "none"  #: only zero the removed weights
    FULL = "full"  #: optimal correlated update  -F^-1 E_K^T (E_K F^-1 E_K^T)^-1 E_K theta


@attrs.define(eq=False)
class ModuleState:
    """A prunable module and its mask during a run.

    Attributes:
        pm: the module.
        mask: ``(d_out, d_in)`` bool, ``True`` where a weight of ``W`` is alive
            (the bias is never masked on its own).
    """

    pm: PrunableModule
    mask: Tensor

    @classmethod
    def dense(cls, pm: PrunableModule) -> ModuleState:
        """State of an unpruned module (alive where the weight is nonzero)."""
        return cls(pm, pm.module.weight.detach().ne(0).cpu())

    def theta(self, dtype: torch.dtype = torch.float64) -> Tensor:
        """``[W | b]`` as ``(d_out, d_in + has_bias)`` in ``dtype``."""
        w = self.pm.module.weight.detach().to(dtype)
        b = self.pm.module.bias
        return w if b is None else torch.cat([w, b.detach().to(dtype)[:, None]], dim=1)

    @torch.no_grad()
    def set_theta(self, theta: Tensor) -> None:
        """Write ``[W | b]`` back (cast to the module's dtype) and re-apply the mask."""
        w = self.pm.module.weight
        d_in = w.shape[1]
        new_w = theta[:, :d_in].to(w.dtype).to(w.device) * self.mask.to(w.device)
        w.copy_(new_w)
        if self.pm.module.bias is not None:
            self.pm.module.bias.copy_(theta[:, d_in].to(w.dtype))

    @torch.no_grad()
    def apply_mask(self) -> None:
        """Zero the masked weights in place."""
        w = self.pm.module.weight
        w.mul_(self.mask.to(device=w.device, dtype=w.dtype))

    def live_rows(self) -> Tensor:
        """Indices of rows with at least one alive weight."""
        return self.mask.any(dim=1).nonzero().flatten()

    def live_cols(self) -> Tensor:
        """Indices of input columns (bias excluded) with at least one alive weight."""
        return self.mask.any(dim=0).nonzero().flatten()

    @property
    def remaining(self) -> int:
        """Number of alive weights."""
        return int(self.mask.sum())


@attrs.define(eq=False)
class CandidateSet:
    """Removal candidates of one module.

    Attributes:
        costs: group name -> 1-D tensor of candidate costs (e.g. ``rows``, ``cols``).
            Candidates that are already removed must have cost 0.
        remaining: given the number of selected candidates in each group (those
            below the global threshold), the number of weights the module keeps.
            Must be non-increasing in every count.
    """

    costs: dict[str, Tensor]
    remaining: Callable[[dict[str, int]], int]


class Structure(ABC):
    """A family of removable weight groups: rows and columns, N:M groups, elements.

    Attributes:
        default_damping_g, default_damping_a: relative damping of ``G`` and ``A`` used
            when the run does not set ``damping_g`` / ``damping_a``.
    """

    default_damping_g: float = 0.1
    default_damping_a: float = 0.1

    @property
    def implied_size(self) -> float | None:
        """Final fraction of weights kept that the structure itself fixes (N:M), else ``None``."""
        return None

    @abstractmethod
    def candidates(self, state: ModuleState, curvature: Curvature) -> CandidateSet:
        """Costs of removing each candidate of ``state``'s module (live sub-matrix only)."""

    @abstractmethod
    def apply(
        self,
        state: ModuleState,
        curvature: Curvature,
        selected: dict[str, Tensor],
        update: UpdateMode,
    ) -> float:
        """Remove the selected candidates, update ``state.mask`` and the module's weights.

        Args:
            state: the module; its weights and mask are changed in place.
            curvature: the module's curvature (full size; restrict to the live part).
            selected: group name -> bool tensor aligned with ``candidates().costs``.
            update: whether to apply the correlated update to the remaining weights.

        Returns:
            The predicted increase of the quadratic loss model.
        """
