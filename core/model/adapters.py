"""Architecture adapters: which modules of a model are prunable, and their roles.

All knowledge of a model family's module names lives in an adapter plugin; the rest
of llm-surgeon only sees :class:`PrunableModule` records and decoder layers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import attrs
from torch import Tensor, nn

from llm_surgeon.errors import UnsupportedArchitectureError
from llm_surgeon.model.couplings import Coupling


def is_transposed_linear(module: nn.Module) -> bool:
    """Whether ``module`` is transformers' ``Conv1D`` (GPT-2): a Linear whose weight is
    stored transposed, ``(d_in, d_out)``, computing ``x @ W + b``."""
    from transformers.pytorch_utils import Conv1D

    return isinstance(module, Conv1D)


@attrs.frozen
class RolePart:
    """The output rows of one role inside a fused projection (``qkv_proj``, ``c_attn``).

    Attributes:
        role: the role of rows ``start ... stop - 1`` (``q``, ``k``, ``v``, ``gate``, ``up``).
        start, stop: the row range in the module's ``(d_out, d_in)`` weight.
    """

    role: str
    start: int
    stop: int


@attrs.frozen
class PrunableModule:
    """One prunable Linear of a model: an ``nn.Linear`` or transformers' ``Conv1D``.

    Everything in llm-surgeon sees the weight as :attr:`weight`, ``(d_out, d_in)``, and
    ``theta = [W | b]``; for a ``Conv1D`` that is a transposed view of the stored
    ``(d_in, d_out)`` parameter, so in-place writes reach the model.

    Attributes:
        name: qualified module name in the model (``model.layers.3.mlp.up_proj``).
        module: the module itself.
        layer: decoder-layer index.
        role: ``q``, ``k``, ``v``, ``o``, ``gate``, ``up``, ``down``, ``fc1``, ``fc2``, or
            the role of a fused projection (``qkv``, ``gate_up``).
        parts: for a fused projection, the row range of each role it holds (in order);
            empty otherwise.
        transposed: the stored weight is ``(d_in, d_out)`` (``Conv1D``).
    """

    name: str
    module: nn.Module = attrs.field(eq=False, repr=False)
    layer: int
    role: str
    parts: tuple[RolePart, ...] = ()
    transposed: bool = False

    @property
    def weight(self) -> Tensor:
        """The weight as ``(d_out, d_in)`` (a view of the parameter; writes reach the model)."""
        w = self.module.weight
        return w.t() if self.transposed else w

    @property
    def has_bias(self) -> bool:
        """Whether the Linear has a bias (treated as an extra input column of ones)."""
        return self.module.bias is not None

    @property
    def shape(self) -> tuple[int, int]:
        """``(d_out, d_in)`` of the weight, bias column excluded."""
        return tuple(self.weight.shape)  # type: ignore[return-value]

    @property
    def numel(self) -> int:
        """Number of prunable weights (bias excluded)."""
        return self.module.weight.numel()

    def rows(self, role: str) -> range:
        """The output rows of ``role`` (all rows when the module has just one role)."""
        for part in self.parts:
            if part.role == role:
                return range(part.start, part.stop)
        if role == self.role:
            return range(self.shape[0])
        raise KeyError(f"{self.name} has no role {role!r}")

    @property
    def roles(self) -> tuple[str, ...]:
        """The roles this module holds: its parts' roles, or its one role."""
        return tuple(p.role for p in self.parts) or (self.role,)


class ArchitectureAdapter(ABC):
    """Knows the layout of one model family (registered under its ``model_type``)."""

    #: ``(attribute path relative to a decoder layer, role)`` of each prunable Linear
    #: (``nn.Linear`` or transformers' ``Conv1D``).
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
            transposed = is_transposed_linear(module)
            if not (isinstance(module, nn.Linear) or transposed):
                raise UnsupportedArchitectureError(
                    f"{prefix}{index}.{path} is a {type(module).__name__}, not an nn.Linear "
                    "(or transformers' Conv1D)"
                )
            found.append(PrunableModule(f"{prefix}{index}.{path}", module, index, role,
                                        self.role_parts(layer, path, role), transposed))
        return found

    def role_parts(self, layer: nn.Module, path: str, role: str) -> tuple[RolePart, ...]:
        """Row ranges of the roles inside the fused projection at ``path`` (default: none).

        Adapters of models with fused projections (``qkv_proj``: q, k and v rows stacked)
        override this; the ranges must cover the rows in order.
        """
        return ()

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


def unsupported_message(model_type: str | None, supported: list[str]) -> str:
    """The error for a model type without adapter: what is supported, how to write one."""
    return (
        f"no architecture adapter for model_type {model_type!r} (supported: {', '.join(supported)}). "
        "To add one, subclass llm_surgeon.model.ArchitectureAdapter (decoder_layers, linear_roles, "
        f"and couplings for structured export), register it under {model_type!r} from a "
        "register_architectures hook of a package's `llm_surgeon` entry point, and check it with "
        "llm_surgeon.testing.check_adapter(config); examples/gpt-neox-adapter in the repository is "
        "a complete example (README, 'Writing a plugin')."
    )


def adapter_for(model: nn.Module) -> ArchitectureAdapter:
    """The registered adapter for ``model.config.model_type``, or a helpful error."""
    from llm_surgeon.registry.registry import Kind, get_registry

    model_type = getattr(getattr(model, "config", None), "model_type", None)
    registry = get_registry()
    if model_type not in registry.names(Kind.ARCHITECTURE):
        raise UnsupportedArchitectureError(unsupported_message(model_type, registry.names(Kind.ARCHITECTURE)))
    return registry.get(Kind.ARCHITECTURE, model_type).create()
