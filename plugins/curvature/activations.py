"""``activations``: ``F = I ⊗ A`` with ``A = 1/N sum_n a_n a_n^T`` (forward passes only).

The input second moment alone is the curvature of the layer-wise reconstruction loss
``||W X - W' X||^2`` used by OBS-style layer-wise pruning (SparseGPT, Wanda's norm).
"""

from __future__ import annotations

import attrs
from torch import Tensor

from llm_surgeon.curvature import (
    INPUT_MOMENT,
    KroneckerCurvature,
    MomentEstimator,
    PrunableModule,
    StatisticsConfig,
    layer_dims,
)


@attrs.frozen
class ActivationsConfig(StatisticsConfig):
    """Options of ``activations`` (see :class:`StatisticsConfig`)."""


class ActivationsCurvature(MomentEstimator):
    """``I ⊗ A``: input second moments only, one forward-only pass."""

    moments = (INPUT_MOMENT,)
    config_class = ActivationsConfig
    label = "activations"

    def curvature(self, pm: PrunableModule, means: dict[str, Tensor]) -> KroneckerCurvature:
        """``A: (d_in, d_in)``, ``G`` the identity."""
        d_out, d_in = layer_dims(pm)
        return KroneckerCurvature(factors=((None, means["A"]),), d_out=d_out, d_in=d_in)
