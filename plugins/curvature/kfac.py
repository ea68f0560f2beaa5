"""``kfac``: classic K-FAC, ``F ≈ G ⊗ A`` (Martens & Grosse, 2015; KFAC-expand over tokens).

``G = 1/N sum_n g_n g_n^T`` over output gradients and ``A = 1/N sum_n a_n a_n^T`` over
inputs (bias column included), both from one forward+backward pass. This is the
curvature of The LLM Surgeon (van der Ouderaa et al., 2024, Sec. 3) before
its nearest-Kronecker refinement (``nearest-kfac``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import attrs
import torch
from torch import Tensor, nn

from llm_surgeon.adapters import PrunableModule
from llm_surgeon.curvature import Curvature, CurvatureEstimator, CurvatureResult, KroneckerCurvature
from llm_surgeon.plugins.curvature._common import (
    GradientConfig,
    SumAccumulator,
    check_finite,
    factor_device,
    layer_dims,
    pass_options,
)
from llm_surgeon.stats import ModuleTokens, PassOptions, PassStats, TokenObserver, run_pass


@attrs.frozen
class KFACConfig(GradientConfig):
    """Options of ``kfac`` (see :class:`GradientConfig`)."""


class _KFACMoments(TokenObserver):
    def __init__(self, n: int, device: torch.device) -> None:
        self.a = SumAccumulator(n, device)
        self.g = SumAccumulator(n, device)

    def forward(self, tokens: ModuleTokens) -> None:
        self.a.add(tokens.index, tokens.gram())

    def backward(self, tokens: ModuleTokens) -> None:
        self.g.add_products(tokens.index, tokens.g, tokens.g)


def kfac_factors(
    model: nn.Module,
    modules: Sequence[PrunableModule],
    batches: Sequence[Tensor],
    *,
    options: PassOptions,
    device: torch.device,
    progress: bool = True,
) -> tuple[list[tuple[Tensor, Tensor]], PassStats, float]:
    """Classic K-FAC factors of each module from one pass.

    Args:
        model, modules, batches: as in :meth:`CurvatureEstimator.estimate`.
        options: Fisher type and accumulation dtype.
        device: where the factors are kept.
        progress: draw a progress bar.

    Returns:
        ``[(G: (d_out, d_out), A: (d_in, d_in)), ...]`` in module order, the pass
        statistics, and the seconds spent normalising and checking the factors.
    """
    observer = _KFACMoments(len(modules), device)
    stats = run_pass(model, modules, batches, observer, gradients=True, options=options,
                     progress=progress, desc="K-FAC")
    start = time.perf_counter()
    factors = []
    for i, pm in enumerate(modules):
        d_out, d_in = layer_dims(pm)
        g = observer.g.mean(i, stats.tokens, (d_out, d_out), options.dtype)
        a = observer.a.mean(i, stats.tokens, (d_in, d_in), options.dtype)
        observer.g.sums[i] = observer.a.sums[i] = None
        check_finite(pm.name, "K-FAC factors", g, a)
        factors.append((g, a))
    return factors, stats, time.perf_counter() - start


class KFACCurvature(CurvatureEstimator):
    """``G ⊗ A`` from output-gradient and input second moments; one pass."""

    def __init__(self, config: KFACConfig | None = None) -> None:
        self.config = config or KFACConfig()

    def estimate(
        self,
        model: nn.Module,
        modules: Sequence[PrunableModule],
        batches: Sequence[Tensor],
        *,
        previous: Mapping[str, Curvature] | None = None,
        progress: bool = True,
    ) -> CurvatureResult:
        """One rank-1 :class:`KroneckerCurvature` per module."""
        factors, stats, seconds = kfac_factors(
            model, modules, batches, options=pass_options(self.config),
            device=factor_device(self.config, model), progress=progress,
        )
        curvatures: dict[str, Curvature] = {}
        for pm, (g, a) in zip(modules, factors, strict=True):
            d_out, d_in = layer_dims(pm)
            curvatures[pm.name] = KroneckerCurvature(factors=((g, a),), d_out=d_out, d_in=d_in)
        return CurvatureResult(
            curvatures=curvatures,
            seconds_passes=stats.seconds,
            seconds_algebra=seconds,
            passes=1,
            info={"tokens": stats.tokens, "seconds_statistics": stats.seconds_observer},
        )
