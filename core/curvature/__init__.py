"""Curvature of the loss per Linear layer: types, calibration passes, estimator bases.

This is the plugin-facing API for curvature estimators: subclass
:class:`CurvatureEstimator` (or :class:`MomentEstimator` for sums over tokens) and return
:class:`KroneckerCurvature` / :class:`DiagonalCurvature` objects. In a distributed job an
estimator with sums over tokens of its own all-reduces them through
:func:`llm_surgeon.dist.current` (``current().all_reduce_(total)``,
``current().sum(tokens)``); :func:`moment_means` does so for its moments.
"""

from llm_surgeon.curvature.estimator import (
    GRADIENT_MOMENT,
    INPUT_MOMENT,
    CurvatureEstimator,
    CurvatureResult,
    ModuleSums,
    Moment,
    MomentEstimator,
    check_finite,
    layer_dims,
    moment_means,
    pass_options,
    statistics_device,
)
from llm_surgeon.curvature.options import FisherType, GradientConfig, StatisticsConfig
from llm_surgeon.curvature.passes import PassOptions, PassStats, TokenObserver, frozen, run_pass
from llm_surgeon.curvature.tokens import ModuleTokens, token_grads, token_inputs
from llm_surgeon.curvature.types import (
    Curvature,
    DenseCurvature,
    DiagonalCurvature,
    KroneckerCurvature,
)
from llm_surgeon.model.adapters import PrunableModule
from llm_surgeon.util.torch_util import model_device

__all__ = [
    "GRADIENT_MOMENT",
    "INPUT_MOMENT",
    "Curvature",
    "CurvatureEstimator",
    "CurvatureResult",
    "DenseCurvature",
    "DiagonalCurvature",
    "FisherType",
    "GradientConfig",
    "KroneckerCurvature",
    "ModuleSums",
    "ModuleTokens",
    "Moment",
    "MomentEstimator",
    "PassOptions",
    "PassStats",
    "PrunableModule",
    "StatisticsConfig",
    "TokenObserver",
    "check_finite",
    "frozen",
    "layer_dims",
    "model_device",
    "moment_means",
    "pass_options",
    "run_pass",
    "statistics_device",
    "token_grads",
    "token_inputs",
]
