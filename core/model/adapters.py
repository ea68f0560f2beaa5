"""Architecture adapters: which modules of a model are prunable, and their roles.

All knowledge of a model family's module names lives in an adapter plugin; the rest
of llm-surgeon only sees :class:`PrunableModule` records and decoder layers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import attrs
from torch import nn

from llm_surgeon.errors import UnsupportedArchitectureError
from llm_surgeon.model.couplings import Coupling


@attrs.frozen
class PrunableModule:
    """One prunable ``nn.Linear`` of a model.

    Attributes:
        name: qualified module name in the model (``model.layers.3.mlp.up_proj``).
        module: the Linear module itself; its weight is ``(d_out, d_in)``.
        layer: decoder-layer index.
        role: ``q``, ``k``, ``v``, ``o``, ``gate``, ``up``, ``down``, ``fc1`` or ``fc2``.
    """

    name: str
    module: nn.Linear = attrs.field(eq=False, repr=False)
    layer: int
    role: str

    @property
    def has_bias(self) -> bool:
        """Whether the Linear has a bias (treated as an extra input column of ones)."""
        return self.module.bias is not None

    @property
    def shape(self) -> tuple[int, int]:
        """``(d_out, d_in)`` of the weight, bias column excluded."""
        return tuple(self.module.weight.shape)  # type: ignore[return-value]

    @property
    def numel(self) -> int:
        """Number of prunable weights (bias excluded)."""
        return self.module.weight.numel()


class ArchitectureAdapter(ABC):
    """Knows the layout of one model family (registered under its ``model_type``)."""

    #: ``(attribute path relative to a decoder layer, role)`` of each prunable Linear.
    linear_roles: tuple[tuple[str, str], ...] = ()
    #: Roles that are computed from the same input and can be pruned together
    #: layer-wise, in the order the layer evaluates them.
    sequential_groups: tuple[tuple[str, ...], ...] = ()

    @abstractmethod
    def decoder_layers(self, model: nn.Module) -> nn.ModuleList:
        """The decoder layers of ``model``, in order."""

    def layers_prefix(self, model: nn.Module) -> str:
        """Qualified name of the decoder-layer list inside ``model``."""
        layers = self.decoder_layers(model)
        for name, module in model.named_modules():
            if module is layers:
                return name
        raise UnsupportedArchitectureError("decoder layers are not a submodule of the model")

    def layer_modules(self, layer: nn.Module, index: int, prefix: str = "") -> list[PrunableModule]:
        """Prunable Linear modules of one decoder layer, in evaluation order."""
        found = []
        for path, role in self.linear_roles:
            module = layer.get_submodule(path)
            if not isinstance(module, nn.Linear):
                raise UnsupportedArchitectureError(f"{prefix}{index}.{path} is not an nn.Linear")
            found.append(PrunableModule(f"{prefix}{index}.{path}", module, index, role))
        return found

    def couplings(self, model: nn.Module) -> list[Coupling]:
        """Dimensions shared by several prunable modules (MLP neurons, heads), per layer.

        Structures that remove real dimensions and dead-structure propagation need them;
        the default declares none.
        """
        return []

    def prunable_modules(self, model: nn.Module) -> list[PrunableModule]:
        """Every prunable Linear of the model, layer by layer."""
        prefix = self.layers_prefix(model) + "."
        return [
            pm
            for i, layer in enumerate(self.decoder_layers(model))
            for pm in self.layer_modules(layer, i, prefix)
        ]


def adapter_for(model: nn.Module) -> ArchitectureAdapter:
    """The registered adapter for ``model.config.model_type``, or a helpful error."""
    from llm_surgeon.registry.registry import Kind, get_registry

    model_type = getattr(getattr(model, "config", None), "model_type", None)
    registry = get_registry()
    if model_type not in registry.names(Kind.ARCHITECTURE):
        raise UnsupportedArchitectureError(
            f"no architecture adapter for model_type {model_type!r} "
            f"(supported: {', '.join(registry.names(Kind.ARCHITECTURE))}). "
            "Add one by subclassing llm_surgeon.model.ArchitectureAdapter and registering it "
            "under that model_type from a plugin's register_architectures hook (see README, "
            "'Writing a plugin')."
        )
    return registry.get(Kind.ARCHITECTURE, model_type).create()
