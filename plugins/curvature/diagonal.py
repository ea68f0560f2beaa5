"""``diagonal``: the exact diagonal of the token-level empirical Fisher.

``D[i, j] = 1/N sum_n g_{n,i}^2 a_{n,j}^2`` (the curvature of Optimal Brain Damage).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import attrs
from torch import Tensor, nn

from llm_surgeon.adapters import PrunableModule
from llm_surgeon.curvature import Curvature, CurvatureEstimator, CurvatureResult, DiagonalCurvature
from llm_surgeon.plugins.curvature._common import (
    GradientConfig,
    SumAccumulator,
    check_finite,
    factor_device,
    layer_dims,
    pass_options,
)
from llm_surgeon.stats import ModuleTokens, TokenObserver, run_pass


@attrs.frozen
class DiagonalConfig(GradientConfig):
    """Options of ``diagonal`` (see :class:`GradientConfig`)."""


class _SquaredProducts(TokenObserver):
    def __init__(self, n: int, device) -> None:
        self.d = SumAccumulator(n, device)

    def backward(self, tokens: ModuleTokens) -> None:
        g = tokens.g
        self.d.add_products(tokens.index, g * g, tokens.a.square())


class DiagonalFisher(CurvatureEstimator):
    """Exact diagonal of the empirical (or sampled) Fisher; one forward+backward pass."""

    def __init__(self, config: DiagonalConfig | None = None) -> None:
        self.config = config or DiagonalConfig()

    def estimate(
        self,
        model: nn.Module,
        modules: Sequence[PrunableModule],
        batches: Sequence[Tensor],
        *,
        previous: Mapping[str, Curvature] | None = None,
        progress: bool = True,
    ) -> CurvatureResult:
        """``DiagonalCurvature`` with ``values: (d_out, d_in)`` per module."""
        options = pass_options(self.config)
        observer = _SquaredProducts(len(modules), factor_device(self.config, model))
        stats = run_pass(model, modules, batches, observer, gradients=True, options=options,
                         progress=progress, desc="diagonal Fisher")
        start = time.perf_counter()
        curvatures: dict[str, Curvature] = {}
        for i, pm in enumerate(modules):
            d = observer.d.mean(i, stats.tokens, layer_dims(pm), options.dtype)
            observer.d.sums[i] = None
            check_finite(pm.name, "diagonal Fisher", d)
            curvatures[pm.name] = DiagonalCurvature(d)
        return CurvatureResult(
            curvatures=curvatures,
            seconds_passes=stats.seconds,
            seconds_algebra=time.perf_counter() - start,
            passes=1,
            info={"tokens": stats.tokens, "seconds_statistics": stats.seconds_observer},
        )
