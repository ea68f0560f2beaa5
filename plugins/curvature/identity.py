"""``identity``: ``F = I ⊗ I``, so that curvature-driven pruning becomes magnitude pruning."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor, nn

from llm_surgeon.curvature import (
    Curvature,
    CurvatureEstimator,
    CurvatureResult,
    KroneckerCurvature,
    PrunableModule,
    layer_dims,
)


class IdentityCurvature(CurvatureEstimator):
    """The identity curvature: costs are squared weights; no pass over the data."""

    needs_gradients = False

    def estimate(
        self,
        model: nn.Module,
        modules: Sequence[PrunableModule],
        batches: Sequence[Tensor],
        *,
        previous: Mapping[str, Curvature] | None = None,
        progress: bool = True,
    ) -> CurvatureResult:
        """One ``KroneckerCurvature(((None, None),))`` per module (both factors identity)."""
        curvatures: dict[str, Curvature] = {}
        for pm in modules:
            d_out, d_in = layer_dims(pm)
            curvatures[pm.name] = KroneckerCurvature(factors=((None, None),), d_out=d_out, d_in=d_in)
        return CurvatureResult(curvatures=curvatures, passes=0)
