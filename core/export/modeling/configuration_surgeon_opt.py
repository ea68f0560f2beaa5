"""Config of a compact (structured-pruned) OPT model.

``OPTConfig`` plus an explicit ``head_dim`` (OPT otherwise derives it from ``hidden_size /
num_attention_heads``) and the per-layer fields of ``SurgeonLlamaConfig``;
``layer_intermediate_sizes`` are the per-layer ``ffn_dim``. The global ``ffn_dim`` and
``num_attention_heads`` keep the sizes of the unpruned model.
"""

from typing import Any

from huggingface_hub.dataclasses import strict
from transformers import OPTConfig

from .surgeon_common import check_layer_fields, fill_layer_fields


@strict
class SurgeonOPTConfig(OPTConfig):
    """``OPTConfig`` with per-layer FFN widths, head counts and index-compressed Linears."""

    model_type = "surgeon_opt"
    head_dim: int | None = None
    layer_intermediate_sizes: list[int] | None = None
    layer_num_attention_heads: list[int] | None = None
    layer_num_key_value_heads: list[int] | None = None
    layer_compressed_linears: list[dict[str, dict[str, int]]] | None = None

    def __post_init__(self, **kwargs: Any) -> None:
        if self.head_dim is None:
            self.head_dim = self.hidden_size // self.num_attention_heads
        super().__post_init__(**kwargs)
        if self.layer_num_key_value_heads is None and self.layer_num_attention_heads is not None:
            self.layer_num_key_value_heads = list(self.layer_num_attention_heads)
        fill_layer_fields(self, self.ffn_dim)

    def validate_architecture(self) -> None:
        """Per-layer checks; OPT has no grouped-query attention."""
        check_layer_fields(self)
        if self.layer_num_key_value_heads != self.layer_num_attention_heads:
            raise ValueError("OPT layers need as many key/value heads as query heads.")
