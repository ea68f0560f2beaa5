"""``kfac``: classic K-FAC, ``F ≈ G ⊗ A`` (Martens & Grosse, 2015; KFAC-expand over tokens).

``G = 1/N sum_n g_n g_n^T`` over output gradients and ``A = 1/N sum_n a_n a_n^T`` over
inputs (bias column included), both from one forward+backward pass. This is the
curvature of The LLM Surgeon (van der Ouderaa et al., 2024, Sec. 3) before
its nearest-Kronecker refinement (``nearest-kfac``).
"""

from __future__ import annotations

import attrs
from torch import Tensor

from llm_surgeon.curvature import (
    GRADIENT_MOMENT,
    INPUT_MOMENT,
    GradientConfig,
    KroneckerCurvature,
    MomentEstimator,
    PrunableModule,
    layer_dims,
)

#: The two sums of one K-FAC pass.
KFAC_MOMENTS = (INPUT_MOMENT, GRADIENT_MOMENT)


@attrs.frozen
class KFACConfig(GradientConfig):
    """Options of ``kfac`` (see :class:`GradientConfig`)."""


class KFACCurvature(MomentEstimator):
    """``G ⊗ A`` from output-gradient and input second moments; one pass."""

    moments = KFAC_MOMENTS
    config_class = KFACConfig
    label = "K-FAC"

    def curvature(self, pm: PrunableModule, means: dict[str, Tensor]) -> KroneckerCurvature:
        """One rank-1 :class:`KroneckerCurvature`: ``G: (d_out, d_out)``, ``A: (d_in, d_in)``."""
        d_out, d_in = layer_dims(pm)
        return KroneckerCurvature(factors=((means["G"], means["A"]),), d_out=d_out, d_in=d_in)
