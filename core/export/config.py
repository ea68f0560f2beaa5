"""The config of a compact model: the original class where the result is uniform, else ours.

A uniform result (every layer with the same MLP width and head counts, none of them zero, no
index-compressed Linear) gets the original architecture's config with the new sizes, so the
folder needs no code. Otherwise the ``surgeon_*`` config carries per-layer sizes
(``layer_intermediate_sizes``, ``layer_num_attention_heads``, ``layer_num_key_value_heads``,
``layer_compressed_linears``) and keeps the global sizes of the unpruned model.
"""

from __future__ import annotations

from typing import Any

from huggingface_hub.errors import StrictDataclassError

from llm_surgeon.export.families import AttentionShape, Family

#: Keys of the pruned model's config that the compact config does not inherit.
_DROPPED_KEYS = ("model_type", "architectures", "auto_map", "transformers_version",
                 "quantization_config", "gguf_file", "_gguf_file")


def config_dict(config: Any) -> dict[str, Any]:
    """The fields of a config, without type, provenance and quantization keys."""
    data = config.to_dict()
    for key in _DROPPED_KEYS:
        data.pop(key, None)
    return data


def plain_config(config: Any, layers: list, shape: AttentionShape) -> Any | None:
    """The original config class with the uniform sizes of ``layers``, or ``None``.

    ``None`` when sizes differ between layers, a layer has no heads or no MLP units, a
    Linear is index-compressed, OPT lost heads (it derives ``head_dim`` from the head count),
    or the original class rejects the sizes (``LlamaConfig`` wants ``hidden_size`` divisible
    by the head count).
    """
    sizes = {(lp.intermediate_size, lp.num_attention_heads, lp.num_key_value_heads) for lp in layers}
    if len(sizes) > 1 or any(lp.compressed for lp in layers):
        return None
    width, heads, kv_heads = sizes.pop()
    if width == 0 or heads == 0:
        return None
    data = config_dict(config)
    if config.model_type == "opt":
        if heads != config.num_attention_heads:
            return None
        data["ffn_dim"] = width
    else:
        data |= {"intermediate_size": width, "num_attention_heads": heads,
                 "num_key_value_heads": kv_heads, "head_dim": shape.head_dim}
    try:
        return type(config).from_dict(data)
    except (ValueError, TypeError, StrictDataclassError):
        return None


def surgeon_config(config: Any, family: Family, layers: list, shape: AttentionShape) -> Any:
    """The ``surgeon_*`` config with per-layer sizes of ``layers``."""
    data = config_dict(config)
    data["head_dim"] = shape.head_dim
    data["layer_intermediate_sizes"] = [lp.intermediate_size for lp in layers]
    data["layer_num_attention_heads"] = [lp.num_attention_heads for lp in layers]
    data["layer_num_key_value_heads"] = [lp.num_key_value_heads for lp in layers]
    data["layer_compressed_linears"] = [
        {path: lin.record() for path, lin in lp.linears.items() if lin.compressed} for lp in layers
    ]
    return family.config_cls.from_dict(data)
