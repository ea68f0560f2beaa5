"""Keeping LoRA adapters inside the live rows and columns of a pruned module.

A LoRA adapter adds ``scaling * B @ A`` to a Linear's weight ``W: (d_out, d_in)``,
with ``A: (r, d_in)`` and ``B: (d_out, r)``. If input column ``j`` of ``W`` is pruned
(its mask column is all ``False``), the adapter must not read that input either:
``A[:, j] = 0``. If output row ``i`` is pruned, the adapter must not write it:
``B[i, :] = 0``. Then ``B @ A`` is zero outside ``live_rows x live_cols``, which for a
row-col mask is exactly the mask, so merging ``B @ A`` into ``W`` and re-applying the
mask changes nothing: the merged model computes the same logits as the adapter model.

For element and N:M masks the live block is usually the whole matrix, and the mask
re-applied after the merge drops part of ``B @ A``; :func:`dropped_delta_fraction`
measures how much.
"""

from __future__ import annotations

import attrs
import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from llm_surgeon.model.state import ModuleState


@attrs.define(eq=False)
class LiveConstraint:
    """Zero pattern of one adapter's factors, enforced on values and gradients.

    Attributes:
        a: ``(r, d_in)`` LoRA ``A`` weight (a parameter of the peft layer).
        b: ``(d_out, r)`` LoRA ``B`` weight.
        live_in: ``(1, d_in)`` 0/1 in ``a``'s dtype: input columns that are alive.
        live_out: ``(d_out, 1)`` 0/1 in ``b``'s dtype: output rows that are alive.
        handles: gradient hooks, removed by :meth:`remove`.
    """

    a: nn.Parameter
    b: nn.Parameter
    live_in: Tensor
    live_out: Tensor
    handles: list[RemovableHandle] = attrs.field(factory=list)

    @classmethod
    def attach(cls, state: ModuleState, a: nn.Parameter, b: nn.Parameter) -> LiveConstraint:
        """Zero the dead part of ``a`` and ``b`` and keep their gradients zero there.

        Args:
            state: the pruned module; ``state.mask`` is ``(d_out, d_in)``.
            a: ``(r, d_in)`` adapter down-projection.
            b: ``(d_out, r)`` adapter up-projection.
        """
        mask = state.mask
        live_in = mask.any(dim=0).to(device=a.device, dtype=a.dtype)[None, :]
        live_out = mask.any(dim=1).to(device=b.device, dtype=b.dtype)[:, None]
        constraint = cls(a, b, live_in, live_out)
        constraint.enforce()
        constraint.handles = [
            a.register_hook(lambda g: g * constraint.live_in),
            b.register_hook(lambda g: g * constraint.live_out),
        ]
        return constraint

    @torch.no_grad()
    def enforce(self) -> None:
        """Re-zero the dead columns of ``A`` and dead rows of ``B`` in place."""
        self.a.mul_(self.live_in)
        self.b.mul_(self.live_out)

    def remove(self) -> None:
        """Drop the gradient hooks."""
        for handle in self.handles:
            handle.remove()
        self.handles = []


@torch.no_grad()
def dropped_delta_fraction(deltas: list[tuple[ModuleState, Tensor]]) -> float:
    """Relative norm of the merged update that the masks zero out again.

    Args:
        deltas: ``(state, delta)`` pairs, ``delta: (d_out, d_in)`` the update ``scaling * B @ A``.

    Returns:
        ``||delta * ~mask|| / ||delta||`` over all modules together (0 when every update
        lies inside its mask, as for row-col masks; 0 also when all updates are zero).
    """
    dropped = total = 0.0
    for state, delta in deltas:
        d = delta.detach().double()
        dead = ~state.mask.to(d.device)
        dropped += float(d.masked_select(dead).pow(2).sum())
        total += float(d.pow(2).sum())
    return (dropped / total) ** 0.5 if total > 0 else 0.0
