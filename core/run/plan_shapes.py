"""What a plan reads of a model and a strategy: module shapes from a meta-device model,
and a method's curvature, structure and options resolved through the registry."""

from __future__ import annotations

from typing import Any

import attrs


@attrs.frozen
class ModuleShape:
    """One prunable Linear: ``d_out`` rows, ``d_w`` weight columns, and maybe a bias."""

    name: str
    layer: int
    role: str
    d_out: int
    d_w: int
    bias: bool = False

    @property
    def d_in(self) -> int:
        """Columns of ``theta = [W | b]``."""
        return self.d_w + int(self.bias)

    @property
    def weights(self) -> int:
        """Prunable weights (bias excluded)."""
        return self.d_out * self.d_w

    @property
    def cost(self) -> float:
        """Factorisation cost, the owner assignment's weight."""
        return float(self.d_out) ** 3 + float(self.d_in) ** 3


@attrs.frozen
class ModelShape:
    """What a plan needs of a model: its sizes and its prunable modules."""

    model_type: str
    layers: int
    hidden: int
    intermediate: int
    vocab: int
    parameters: int
    modules: tuple[ModuleShape, ...]


@attrs.frozen
class Strategy:
    """A method with its curvature estimator and structure, as a plan sees them.

    Attributes:
        method: method name; ``layerwise`` methods propagate layer by layer.
        curvature: estimator name (``None``: none).
        structure: structure name as given (``row-col``, ``element``, ``2:4``...).
        diagonal: the method reduces the curvature to its diagonal.
        layerwise: a layer-wise method (SparseGPT, Wanda).
        hessian: a layer-wise method whose statistic is a ``d_in x d_in`` matrix that it
            factorises (SparseGPT), not a vector (Wanda).
        rank, iterations: nearest-kfac's options.
    """

    method: str
    curvature: str | None
    structure: str
    diagonal: bool = False
    layerwise: bool = False
    hessian: bool = True
    rank: int = 1
    iterations: int = 2

    @property
    def label(self) -> str:
        curvature = f" {self.curvature}" if self.curvature else ""
        return f"{self.method}{curvature} {self.structure}"


#: What ``plan`` shows without ``--method``/``--structure``: (method, curvature, structure).
DEFAULT_STRATEGIES = (
    ("surgeon", "kfac", "row-col"), ("surgeon", "kfac", "element"), ("surgeon", "kfac", "2:4"),
    ("surgeon", "nearest-kfac", "row-col"), ("kobd", None, "row-col"), ("lobd", None, "row-col"),
    ("sparsegpt", None, "element"), ("wanda", None, "element"), ("magnitude", None, "row-col"),
)


def load_config(spec: str, trust_remote_code: bool = False) -> Any:
    """A model's transformers configuration: of a ``config.json`` file, or as
    :func:`~llm_surgeon.model.loading.load_model_config` reads it (folder, GGUF, alias, hub)."""
    from pathlib import Path

    from llm_surgeon.model.loading import load_model_config

    path = Path(spec).expanduser()
    if path.is_file() and path.suffix == ".json":
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(str(path.parent) if path.name == "config.json" else str(path),
                                          trust_remote_code=trust_remote_code)
    return load_model_config(spec, trust_remote_code=trust_remote_code)


def model_shape(config: Any, *, layers: int | None = None, trust_remote_code: bool = False) -> ModelShape:
    """Sizes and prunable modules of the model of ``config``, from a meta-device instance."""
    import copy

    import torch
    from transformers import AutoModelForCausalLM

    from llm_surgeon.model.adapters import adapter_for

    config = copy.deepcopy(config)
    if layers is not None:
        config.num_hidden_layers = layers
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    modules = tuple(ModuleShape(pm.name, pm.layer, pm.role, pm.shape[0], pm.shape[1], pm.has_bias)
                    for pm in adapter_for(model).prunable_modules(model))
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return ModelShape(
        model_type=str(config.model_type), layers=int(text.num_hidden_layers), hidden=int(text.hidden_size),
        intermediate=max(max(m.d_out, m.d_w) for m in modules), vocab=int(text.vocab_size),
        parameters=sum(p.numel() for p in model.parameters()), modules=modules,
    )


def resolve_strategy(method: str, curvature: str | None, structure: str,
                     curvature_options: dict[str, Any] | None = None) -> Strategy:
    """A :class:`Strategy` from registered names (the method's default curvature if none)."""
    from llm_surgeon.registry.registry import Kind, get_registry
    from llm_surgeon.run.validate import method_attribute

    registry = get_registry()
    record = registry.get(Kind.METHOD, method)
    config = record.make_config()
    layerwise = hasattr(record.factory, "make_stat")
    hessian = layerwise and hasattr(record.create(config).make_stat(4), "hessian")
    curvature = None if layerwise else (curvature or method_attribute(record, config, "default_curvature"))
    options = dict(curvature_options or {})
    if curvature is not None:  # validate the name and options like a run would
        registry.get(Kind.CURVATURE, curvature).make_config(**options)
    return Strategy(method=method, curvature=curvature, structure=structure,
                    diagonal=bool(method_attribute(record, config, "diagonal", False)),
                    layerwise=layerwise, hessian=hessian or not layerwise, rank=int(options.get("rank", 1)),
                    iterations=int(options.get("iterations", 2)))

