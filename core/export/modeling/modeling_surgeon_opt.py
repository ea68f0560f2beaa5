"""Compact OPT causal LM whose decoder layers each have their own size.

Each layer is an ``OPTDecoderLayer`` built with its own ``ffn_dim`` whose attention is a
``SurgeonOPTAttention`` with that layer's head count and the explicit ``config.head_dim``. A
layer with no heads or no FFN units gets blocks that only add their bias, and the Linears named
in ``config.layer_compressed_linears`` become ``IndexedLinear``s.

Copied next to the weights of a compact export (loaded with ``trust_remote_code=True``) and
also used by llm-surgeon itself; it imports only torch, transformers and its sibling files.
"""

from __future__ import annotations

import copy

from torch import nn
from transformers import OPTForCausalLM
from transformers.models.opt.modeling_opt import OPTAttention, OPTDecoderLayer

from .configuration_surgeon_opt import SurgeonOPTConfig
from .surgeon_common import ConstantOutput, NoHeadAttention, index_linears


class SurgeonOPTAttention(OPTAttention):
    """``OPTAttention`` with ``num_heads`` heads of size ``config.head_dim``.

    ``OPTAttention.__init__`` derives ``head_dim = hidden_size // num_heads``, so this sets the
    attributes that ``OPTAttention.forward`` reads itself. Projections: q/k/v
    ``(num_heads * head_dim, hidden)``, out ``(hidden, num_heads * head_dim)``.
    """

    def __init__(self, config: SurgeonOPTConfig, layer_idx: int, num_heads: int) -> None:
        nn.Module.__init__(self)
        self.config = config
        self.embed_dim = config.hidden_size
        self.num_heads = num_heads
        self.head_dim = config.head_dim
        self.dropout = config.attention_dropout
        self.enable_bias = config.enable_bias
        self.layer_idx = layer_idx
        self.is_causal = True
        self.scaling = self.head_dim**-0.5
        inner, bias = num_heads * self.head_dim, config.enable_bias
        self.k_proj = nn.Linear(self.embed_dim, inner, bias=bias)
        self.v_proj = nn.Linear(self.embed_dim, inner, bias=bias)
        self.q_proj = nn.Linear(self.embed_dim, inner, bias=bias)
        self.out_proj = nn.Linear(inner, self.embed_dim, bias=bias)


def build_layer(config: SurgeonOPTConfig, layer_idx: int) -> OPTDecoderLayer:
    """Build decoder layer ``layer_idx`` at its own size."""
    heads = config.layer_num_attention_heads[layer_idx]
    width = config.layer_intermediate_sizes[layer_idx]
    sized = copy.copy(config)
    # The stock attention built here (one head) and an FFN of width 0 are replaced below.
    sized.num_attention_heads = 1
    sized.ffn_dim = width or 1
    layer = OPTDecoderLayer(sized, layer_idx)
    if heads:
        layer.self_attn = SurgeonOPTAttention(config, layer_idx, heads)
    else:
        layer.self_attn = NoHeadAttention(config.hidden_size, layer_idx, config.enable_bias)
    if width == 0:
        layer.fc1 = ConstantOutput(0, bias=False)
        layer.fc2 = ConstantOutput(config.hidden_size, layer.fc2.bias is not None)
    index_linears(layer, config.layer_compressed_linears[layer_idx])
    return layer


class SurgeonOPTForCausalLM(OPTForCausalLM):
    """``OPTForCausalLM`` with per-layer sizes (see ``SurgeonOPTConfig``)."""

    config_class = SurgeonOPTConfig

    def __init__(self, config: SurgeonOPTConfig) -> None:
        super().__init__(config)
        n = config.num_hidden_layers
        self.model.decoder.layers = nn.ModuleList(build_layer(config, i) for i in range(n))
        self.post_init()
