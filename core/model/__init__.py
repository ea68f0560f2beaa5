"""Models: loading and saving, architecture adapters, couplings, module state.

This is the plugin-facing API for architecture adapters: subclass
:class:`ArchitectureAdapter` and declare the prunable Linears, their roles and the
dimensions they share (:class:`Coupling`).
"""

from llm_surgeon.model.adapters import (
    ArchitectureAdapter,
    PrunableModule,
    RolePart,
    adapter_for,
    is_transposed_linear,
)
from llm_surgeon.model.aliases import ALIASES, ModelAlias
from llm_surgeon.model.couplings import Coupling, Member, attention_couplings
from llm_surgeon.model.loading import (
    ModelSource,
    context_length,
    load_model,
    load_model_config,
    resolve_model_path,
    save_model,
    strip_quantization,
)
from llm_surgeon.model.state import ModuleState

__all__ = [
    "ALIASES",
    "ArchitectureAdapter",
    "Coupling",
    "Member",
    "ModelAlias",
    "ModelSource",
    "ModuleState",
    "PrunableModule",
    "RolePart",
    "adapter_for",
    "attention_couplings",
    "context_length",
    "is_transposed_linear",
    "load_model",
    "load_model_config",
    "resolve_model_path",
    "save_model",
    "strip_quantization",
]
