"""Configs of compact (structured-pruned) Llama, Mistral and Qwen2 models.

Each config is its base config plus per-layer sizes, which are what gets built. The global
``intermediate_size``, ``num_attention_heads`` and ``num_key_value_heads`` keep the sizes of the
unpruned model; ``head_dim`` is always explicit. Copied next to the weights of a compact export,
so it imports only transformers and its sibling files.
"""

from typing import Any

from huggingface_hub.dataclasses import strict
from transformers import LlamaConfig, MistralConfig, Qwen2Config

from .surgeon_common import check_layer_fields, fill_layer_fields


@strict
class SurgeonLlamaConfig(LlamaConfig):
    """``LlamaConfig`` with per-layer MLP widths, head counts and index-compressed Linears.

    ``layer_compressed_linears[i]`` maps a module path inside layer ``i`` (``"mlp.down_proj"``)
    to ``{"in_features", "out_features", "in_live", "out_live"}``.
    """

    model_type = "surgeon_llama"
    layer_intermediate_sizes: list[int] | None = None
    layer_num_attention_heads: list[int] | None = None
    layer_num_key_value_heads: list[int] | None = None
    layer_compressed_linears: list[dict[str, dict[str, int]]] | None = None

    def __post_init__(self, **kwargs: Any) -> None:
        super().__post_init__(**kwargs)
        fill_layer_fields(self, self.intermediate_size)

    def validate_architecture(self) -> None:
        """Per-layer checks replace the base ``hidden_size % num_attention_heads`` check."""
        check_layer_fields(self)


@strict
class SurgeonMistralConfig(MistralConfig):
    """``MistralConfig`` with the per-layer fields of ``SurgeonLlamaConfig``."""

    model_type = "surgeon_mistral"
    layer_intermediate_sizes: list[int] | None = None
    layer_num_attention_heads: list[int] | None = None
    layer_num_key_value_heads: list[int] | None = None
    layer_compressed_linears: list[dict[str, dict[str, int]]] | None = None

    def __post_init__(self, **kwargs: Any) -> None:
        super().__post_init__(**kwargs)
        fill_layer_fields(self, self.intermediate_size)

    def validate_architecture(self) -> None:
        """Per-layer checks."""
        check_layer_fields(self)


@strict
class SurgeonQwen2Config(Qwen2Config):
    """``Qwen2Config`` with the per-layer fields of ``SurgeonLlamaConfig``."""

    model_type = "surgeon_qwen2"
    layer_intermediate_sizes: list[int] | None = None
    layer_num_attention_heads: list[int] | None = None
    layer_num_key_value_heads: list[int] | None = None
    layer_compressed_linears: list[dict[str, dict[str, int]]] | None = None

    def __post_init__(self, **kwargs: Any) -> None:
        super().__post_init__(**kwargs)
        fill_layer_fields(self, self.intermediate_size)

    def validate_architecture(self) -> None:
        """Per-layer checks."""
        check_layer_fields(self)
