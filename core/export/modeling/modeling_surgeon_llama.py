"""Compact Llama / Mistral / Qwen2 causal LMs whose decoder layers each have their own size.

Each layer is the family's own decoder layer (``LlamaDecoderLayer`` ...) built from a copy of
the config that carries that layer's ``intermediate_size``, ``num_attention_heads`` and
``num_key_value_heads``; attention reshapes with ``(-1, head_dim)`` and repeats key/value heads
``num_attention_heads // num_key_value_heads`` times, so nothing else changes. A layer with no
heads or no MLP units gets a block that only adds its bias, and the Linears named in
``config.layer_compressed_linears`` become ``IndexedLinear``s.

Copied next to the weights of a compact export (loaded with ``trust_remote_code=True``) and
also used by llm-surgeon itself; it imports only torch, transformers and its sibling files.
"""

from __future__ import annotations

import copy

from torch import nn
from transformers import LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM
from transformers.models.llama.modeling_llama import LlamaDecoderLayer
from transformers.models.mistral.modeling_mistral import MistralDecoderLayer
from transformers.models.qwen2.modeling_qwen2 import Qwen2DecoderLayer

from .configuration_surgeon_llama import (
    SurgeonLlamaConfig,
    SurgeonMistralConfig,
    SurgeonQwen2Config,
)
from .surgeon_common import ConstantOutput, NoHeadAttention, index_linears

AnySurgeonConfig = SurgeonLlamaConfig | SurgeonMistralConfig | SurgeonQwen2Config


def build_layer(config: AnySurgeonConfig, layer_idx: int, layer_cls: type[nn.Module]) -> nn.Module:
    """Build decoder layer ``layer_idx`` of class ``layer_cls`` at its own size."""
    heads = config.layer_num_attention_heads[layer_idx]
    width = config.layer_intermediate_sizes[layer_idx]
    sized = copy.copy(config)
    # A block of size 0 is built at size 1 and replaced right below.
    sized.num_attention_heads = heads or 1
    sized.num_key_value_heads = config.layer_num_key_value_heads[layer_idx] or 1
    sized.intermediate_size = width or 1
    layer = layer_cls(sized, layer_idx)
    layer.self_attn.config = config  # follow later changes of the attention implementation
    if heads == 0:
        bias = layer.self_attn.o_proj.bias is not None
        layer.self_attn = NoHeadAttention(config.hidden_size, layer_idx, bias)
    if width == 0:
        layer.mlp = ConstantOutput(config.hidden_size, layer.mlp.down_proj.bias is not None)
    index_linears(layer, config.layer_compressed_linears[layer_idx])
    return layer


def resize_layers(decoder: nn.Module, config: AnySurgeonConfig, layer_cls: type[nn.Module]) -> None:
    """Replace ``decoder.layers`` by layers built at their per-layer sizes."""
    n = config.num_hidden_layers
    decoder.layers = nn.ModuleList(build_layer(config, i, layer_cls) for i in range(n))


class SurgeonLlamaForCausalLM(LlamaForCausalLM):
    """``LlamaForCausalLM`` with per-layer sizes (see ``SurgeonLlamaConfig``)."""

    config_class = SurgeonLlamaConfig

    def __init__(self, config: SurgeonLlamaConfig) -> None:
        super().__init__(config)
        resize_layers(self.model, config, LlamaDecoderLayer)
        self.post_init()


class SurgeonMistralForCausalLM(MistralForCausalLM):
    """``MistralForCausalLM`` with per-layer sizes (see ``SurgeonLlamaConfig``)."""

    config_class = SurgeonMistralConfig

    def __init__(self, config: SurgeonMistralConfig) -> None:
        super().__init__(config)
        resize_layers(self.model, config, MistralDecoderLayer)
        self.post_init()


class SurgeonQwen2ForCausalLM(Qwen2ForCausalLM):
    """``Qwen2ForCausalLM`` with per-layer sizes (see ``SurgeonLlamaConfig``)."""

    config_class = SurgeonQwen2Config

    def __init__(self, config: SurgeonQwen2Config) -> None:
        super().__init__(config)
        resize_layers(self.model, config, Qwen2DecoderLayer)
        self.post_init()
