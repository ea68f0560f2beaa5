"""The mask of one prunable module during a run, and its weights as ``theta = [W | b]``."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import attrs
import torch
from torch import Tensor

from llm_surgeon.model.adapters import PrunableModule


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
        return cls(pm, pm.weight.detach().ne(0).cpu())

    def theta(self, dtype: torch.dtype = torch.float64) -> Tensor:
        """A copy of ``[W | b]`` as ``(d_out, d_in + has_bias)`` in ``dtype``.

        Always a new tensor, also when the weight already has ``dtype`` and there is no
        bias, so that a snapshot never changes when the module's weights are updated.
        """
        w = self.pm.weight.detach()
        b = self.pm.module.bias
        if b is None:
            return w.to(dtype, copy=True)
        return torch.cat([w.to(dtype), b.detach().to(dtype)[:, None]], dim=1)

    @torch.no_grad()
    def set_theta(self, theta: Tensor) -> None:
        """Write ``[W | b]`` back (cast to the module's dtype) and re-apply the mask."""
        w = self.pm.weight
        d_in = w.shape[1]
        new_w = theta[:, :d_in].to(w.dtype).to(w.device) * self.mask.to(w.device)
        w.copy_(new_w)
        if self.pm.module.bias is not None:
            self.pm.module.bias.copy_(theta[:, d_in].to(w.dtype))

    @torch.no_grad()
    def apply_mask(self) -> None:
        """Zero the masked weights in place."""
        w = self.pm.weight
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
        return int(torch.count_nonzero(self.mask))


def mask_sha256(states: Sequence[ModuleState]) -> str:
    """SHA-256 over every module's name, shape and bit-packed mask, in model order."""
    import numpy as np

    digest = hashlib.sha256()
    for s in states:
        digest.update(f"{s.pm.name}:{tuple(s.mask.shape)};".encode())
        digest.update(np.packbits(s.mask.cpu().numpy()).tobytes())
    return digest.hexdigest()
