"""llm-surgeon: prune large language models with Kronecker-factored curvature.

The public API, importable from the top-level package::

    from llm_surgeon import RunConfig, prune

    report = prune(RunConfig(model="smollm2-135m", method="magnitude", structure="element",
                             target_size=0.5, shots=1, out="out/magnitude"))

Names are imported lazily on first use, so ``import llm_surgeon`` stays cheap (no
torch or transformers until they are needed).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: Public name -> module that defines it.
_EXPORTS: dict[str, str] = {
    # running
    "prune": "llm_surgeon.runner",
    "validate_run": "llm_surgeon.validate",
    "ResolvedRun": "llm_surgeon.validate",
    # configuration
    "RunConfig": "llm_surgeon.config",
    "CalibrationConfig": "llm_surgeon.config",
    "EvalConfig": "llm_surgeon.config",
    "DataConfig": "llm_surgeon.config",
    "LoraSettings": "llm_surgeon.config",
    "FisherType": "llm_surgeon.config",
    "load_recipe": "llm_surgeon.recipes",
    "config_from_recipe": "llm_surgeon.recipes",
    # models, data, evaluation
    "load_model": "llm_surgeon.models",
    "load_model_config": "llm_surgeon.models",
    "resolve_model_path": "llm_surgeon.models",
    "save_model": "llm_surgeon.models",
    "load_text": "llm_surgeon.data",
    "calibration_windows": "llm_surgeon.data",
    "eval_windows": "llm_surgeon.data",
    "perplexity": "llm_surgeon.evaluate",
    # plugins
    "hookimpl": "llm_surgeon.hookspecs",
    "get_registry": "llm_surgeon.registry",
    "Kind": "llm_surgeon.registry",
    "PluginRecord": "llm_surgeon.registry",
    "ArchitectureAdapter": "llm_surgeon.adapters",
    "PrunableModule": "llm_surgeon.adapters",
    "Curvature": "llm_surgeon.curvature",
    "CurvatureEstimator": "llm_surgeon.curvature",
    "CurvatureResult": "llm_surgeon.curvature",
    "KroneckerCurvature": "llm_surgeon.curvature",
    "DiagonalCurvature": "llm_surgeon.curvature",
    "Structure": "llm_surgeon.structures",
    "Method": "llm_surgeon.methods",
    # errors
    "SurgeonError": "llm_surgeon.errors",
    "ConfigError": "llm_surgeon.errors",
    "PluginError": "llm_surgeon.errors",
    "UnsupportedArchitectureError": "llm_surgeon.errors",
    "NumericalError": "llm_surgeon.errors",
}

__all__ = [
    "ArchitectureAdapter",
    "CalibrationConfig",
    "ConfigError",
    "Curvature",
    "CurvatureEstimator",
    "CurvatureResult",
    "DataConfig",
    "DiagonalCurvature",
    "EvalConfig",
    "FisherType",
    "Kind",
    "KroneckerCurvature",
    "LoraSettings",
    "Method",
    "NumericalError",
    "PluginError",
    "PluginRecord",
    "PrunableModule",
    "ResolvedRun",
    "RunConfig",
    "Structure",
    "SurgeonError",
    "UnsupportedArchitectureError",
    "calibration_windows",
    "config_from_recipe",
    "eval_windows",
    "get_registry",
    "hookimpl",
    "load_model",
    "load_model_config",
    "load_recipe",
    "load_text",
    "perplexity",
    "prune",
    "resolve_model_path",
    "save_model",
    "validate_run",
    "__version__",
]


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib import metadata

        try:
            return metadata.version("llm-surgeon")
        except metadata.PackageNotFoundError:  # pragma: no cover - source tree without install
            return "0+unknown"
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'llm_surgeon' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from llm_surgeon.adapters import ArchitectureAdapter, PrunableModule
    from llm_surgeon.config import (
        CalibrationConfig,
        DataConfig,
        EvalConfig,
        FisherType,
        LoraSettings,
        RunConfig,
    )
    from llm_surgeon.curvature import (
        Curvature,
        CurvatureEstimator,
        CurvatureResult,
        DiagonalCurvature,
        KroneckerCurvature,
    )
    from llm_surgeon.data import calibration_windows, eval_windows, load_text
    from llm_surgeon.errors import (
        ConfigError,
        NumericalError,
        PluginError,
        SurgeonError,
        UnsupportedArchitectureError,
    )
    from llm_surgeon.evaluate import perplexity
    from llm_surgeon.hookspecs import hookimpl
    from llm_surgeon.methods import Method
    from llm_surgeon.models import load_model, load_model_config, resolve_model_path, save_model
    from llm_surgeon.recipes import config_from_recipe, load_recipe
    from llm_surgeon.registry import Kind, PluginRecord, get_registry
    from llm_surgeon.runner import prune
    from llm_surgeon.structures import Structure
    from llm_surgeon.validate import ResolvedRun, validate_run
