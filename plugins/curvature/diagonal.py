"""``diagonal``: the exact diagonal of the token-level empirical Fisher.

``D[i, j] = 1/N sum_n g_{n,i}^2 a_{n,j}^2`` (the curvature of Optimal Brain Damage).
"""

from __future__ import annotations

import attrs
from torch import Tensor

from llm_surgeon.curvature import (
    DiagonalCurvature,
    GradientConfig,
    Moment,
    MomentEstimator,
    PrunableModule,
    layer_dims,
)


@attrs.frozen
class DiagonalConfig(GradientConfig):
    """Options of ``diagonal`` (see :class:`GradientConfig`)."""


#: ``sum_n (g_n ∘ g_n) (a_n ∘ a_n)^T``, ``(d_out, d_in)``.
SQUARED_PRODUCTS = Moment("D", True, lambda t: (t.g * t.g, t.a.square()), layer_dims)


class DiagonalFisher(MomentEstimator):
    """Exact diagonal of the empirical (or sampled) Fisher; one forward+backward pass."""

    moments = (SQUARED_PRODUCTS,)
    config_class = DiagonalConfig
    label = "diagonal Fisher"

    def curvature(self, pm: PrunableModule, means: dict[str, Tensor]) -> DiagonalCurvature:
        """``DiagonalCurvature`` with ``values: (d_out, d_in)``."""
        return DiagonalCurvature(means["D"])
