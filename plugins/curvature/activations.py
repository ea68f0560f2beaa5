"""``activations``: ``F = I ⊗ A`` with ``A = 1/N sum_n a_n a_n^T`` (forward passes only).

The input second moment alone is the curvature of the layer-wise reconstruction loss
``||W X - W' X||^2`` used by OBS-style layer-wise pruning (SparseGPT, Wanda's norm).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import attrs
from torch import Tensor, nn

from llm_surgeon.adapters import PrunableModule
from llm_surgeon.curvature import Curvature, CurvatureEstimator, CurvatureResult, KroneckerCurvature
from llm_surgeon.plugins.curvature._common import (
    StatisticsConfig,
    SumAccumulator,
    check_finite,
    factor_device,
    layer_dims,
    pass_options,
)
from llm_surgeon.stats import ModuleTokens, TokenObserver, run_pass


@attrs.frozen
class ActivationsConfig(StatisticsConfig):
    """Options of ``activations`` (see :class:`StatisticsConfig`)."""


class _InputMoments(TokenObserver):
    def __init__(self, n: int, device) -> None:
        self.a = SumAccumulator(n, device)

    def forward(self, tokens: ModuleTokens) -> None:
        self.a.add(tokens.index, tokens.gram())


class ActivationsCurvature(CurvatureEstimator):
    """``I ⊗ A``: input second moments only, one forward-only pass."""

    needs_gradients = False

    def __init__(self, config: ActivationsConfig | None = None) -> None:
        self.config = config or ActivationsConfig()

    def estimate(
        self,
        model: nn.Module,
        modules: Sequence[PrunableModule],
        batches: Sequence[Tensor],
        *,
        previous: Mapping[str, Curvature] | None = None,
        progress: bool = True,
    ) -> CurvatureResult:
        """One forward pass; ``A: (d_in, d_in)`` per module, ``G`` the identity."""
        options = pass_options(self.config)
        observer = _InputMoments(len(modules), factor_device(self.config, model))
        stats = run_pass(model, modules, batches, observer, gradients=False, options=options,
                         progress=progress, desc="activations")
        start = time.perf_counter()
        curvatures: dict[str, Curvature] = {}
        for i, pm in enumerate(modules):
            d_out, d_in = layer_dims(pm)
            a = observer.a.mean(i, stats.tokens, (d_in, d_in), options.dtype)
            observer.a.sums[i] = None
            check_finite(pm.name, "input second moment A", a)
            curvatures[pm.name] = KroneckerCurvature(factors=((None, a),), d_out=d_out, d_in=d_in)
        return CurvatureResult(
            curvatures=curvatures,
            seconds_passes=stats.seconds,
            seconds_algebra=time.perf_counter() - start,
            passes=1,
            info={"tokens": stats.tokens, "seconds_statistics": stats.seconds_observer},
        )
