"""llm-surgeon: prune large language models with Kronecker-factored curvature.

The public API, importable from the top-level package::

    from llm_surgeon.run.config import RunConfig
    from llm_surgeon.run.runner import prune

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
    "prune": "llm_surgeon.run.runner",
    "validate_run": "llm_surgeon.run.validate",
    "ResolvedRun": "llm_surgeon.run.validate",
    # configuration
    "RunConfig": "llm_surgeon.run.config",
    "CalibrationConfig": "llm_surgeon.data.config",
    "EvalConfig": "llm_surgeon.data.config",
    "DataConfig": "llm_surgeon.data.config",
    "ChatConfig": "llm_surgeon.data.config",
    "FidelityConfig": "llm_surgeon.data.config",
    "LoraSettings": "llm_surgeon.methods.lora.settings",
    "FisherType": "llm_surgeon.curvature.options",
    "load_recipe": "llm_surgeon.run.recipes",
    "config_from_recipe": "llm_surgeon.run.recipes",
    # models, data, evaluation
    "load_model": "llm_surgeon.model.loading",
    "load_model_config": "llm_surgeon.model.loading",
    "resolve_model_path": "llm_surgeon.model.loading",
    "save_model": "llm_surgeon.model.loading",
    # exports
    "load": "llm_surgeon.export.folders",
    "compact_model": "llm_surgeon.export.compact",
    "build_compact": "llm_surgeon.export.compact",
    "save_compact": "llm_surgeon.export.folders",
    "export_folder": "llm_surgeon.export.folders",
    "semi_structured": "llm_surgeon.export.semi_structured",
    "load_text": "llm_surgeon.data.text",
    "calibration_windows": "llm_surgeon.data.windows",
    "eval_windows": "llm_surgeon.data.windows",
    "perplexity": "llm_surgeon.data.perplexity",
    "load_conversations": "llm_surgeon.data.conversations",
    "self_generate": "llm_surgeon.data.generation",
    "build_reference": "llm_surgeon.data.reference",
    "measure_fidelity": "llm_surgeon.data.fidelity",
    # plugins
    "hookimpl": "llm_surgeon.registry.hookspecs",
    "get_registry": "llm_surgeon.registry.registry",
    "Kind": "llm_surgeon.registry.registry",
    "PluginRecord": "llm_surgeon.registry.registry",
    "ArchitectureAdapter": "llm_surgeon.model.adapters",
    "PrunableModule": "llm_surgeon.model.adapters",
    "Curvature": "llm_surgeon.curvature.types",
    "CurvatureEstimator": "llm_surgeon.curvature.estimator",
    "CurvatureResult": "llm_surgeon.curvature.estimator",
    "KroneckerCurvature": "llm_surgeon.curvature.types",
    "DiagonalCurvature": "llm_surgeon.curvature.types",
    "Structure": "llm_surgeon.pruning.structures",
    "Method": "llm_surgeon.methods.base",
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
    "ChatConfig",
    "ConfigError",
    "Curvature",
    "CurvatureEstimator",
    "CurvatureResult",
    "DataConfig",
    "DiagonalCurvature",
    "EvalConfig",
    "FidelityConfig",
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
    "build_reference",
    "calibration_windows",
    "config_from_recipe",
    "eval_windows",
    "get_registry",
    "hookimpl",
    "load_conversations",
    "load_model",
    "load_model_config",
    "load_recipe",
    "load_text",
    "measure_fidelity",
    "perplexity",
    "prune",
    "resolve_model_path",
    "save_model",
    "self_generate",
    "validate_run",
    "build_compact",
    "compact_model",
    "export_folder",
    "load",
    "save_compact",
    "semi_structured",
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
    from llm_surgeon.curvature.estimator import CurvatureEstimator, CurvatureResult
    from llm_surgeon.curvature.options import FisherType
    from llm_surgeon.curvature.types import Curvature, DiagonalCurvature, KroneckerCurvature
    from llm_surgeon.data.config import (
        CalibrationConfig,
        ChatConfig,
        DataConfig,
        EvalConfig,
        FidelityConfig,
    )
    from llm_surgeon.data.conversations import load_conversations
    from llm_surgeon.data.fidelity import measure_fidelity
    from llm_surgeon.data.generation import self_generate
    from llm_surgeon.data.perplexity import perplexity
    from llm_surgeon.data.reference import build_reference
    from llm_surgeon.data.text import load_text
    from llm_surgeon.data.windows import calibration_windows, eval_windows
    from llm_surgeon.errors import (
        ConfigError,
        NumericalError,
        PluginError,
        SurgeonError,
        UnsupportedArchitectureError,
    )
    from llm_surgeon.export.compact import build_compact, compact_model
    from llm_surgeon.export.folders import export_folder, load, save_compact
    from llm_surgeon.export.semi_structured import semi_structured
    from llm_surgeon.methods.base import Method
    from llm_surgeon.methods.lora.settings import LoraSettings
    from llm_surgeon.model.adapters import ArchitectureAdapter, PrunableModule
    from llm_surgeon.model.loading import (
        load_model,
        load_model_config,
        resolve_model_path,
        save_model,
    )
    from llm_surgeon.pruning.structures import Structure
    from llm_surgeon.registry.hookspecs import hookimpl
    from llm_surgeon.registry.registry import Kind, PluginRecord, get_registry
    from llm_surgeon.run.config import RunConfig
    from llm_surgeon.run.recipes import config_from_recipe, load_recipe
    from llm_surgeon.run.runner import prune
    from llm_surgeon.run.validate import ResolvedRun, validate_run
