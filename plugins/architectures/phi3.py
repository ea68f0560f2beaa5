"""Adapter for Phi-3: fused ``qkv_proj`` and ``gate_up_proj`` Linears.

``qkv_proj`` stacks the query rows (``heads * head_dim``), then the key rows and the
value rows (``kv_heads * head_dim`` each); ``gate_up_proj`` stacks the gate rows, then
the up rows (``intermediate_size`` each). The adapter declares these row ranges as role
parts, and its couplings place every head and neuron inside them (``Member.offset``).
"""

from __future__ import annotations

from torch import nn

from llm_surgeon.model import ArchitectureAdapter, Coupling, Member, RolePart


def _sizes(model_or_layer_config) -> tuple[int, int, int]:
    """``(heads, kv_heads, head_dim)`` of a Phi-3 config."""
    c = model_or_layer_config
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    return c.num_attention_heads, c.num_key_value_heads, head_dim


class Phi3Adapter(ArchitectureAdapter):
    """``model.model.layers[i].{self_attn.{qkv_proj, o_proj}, mlp.{gate_up_proj, down_proj}}``."""

    linear_roles = (
        ("self_attn.qkv_proj", "qkv"),
        ("self_attn.o_proj", "o"),
        ("mlp.gate_up_proj", "gate_up"),
        ("mlp.down_proj", "down"),
    )
    sequential_groups = (("qkv",), ("o",), ("gate_up",), ("down",))

    def decoder_layers(self, model: nn.Module) -> nn.ModuleList:
        return model.model.layers

    def role_parts(self, layer: nn.Module, path: str, role: str) -> tuple[RolePart, ...]:
        if role == "qkv":
            heads, kv_heads, hd = _sizes(layer.self_attn.config)
            q, kv = heads * hd, kv_heads * hd
            return (RolePart("q", 0, q), RolePart("k", q, q + kv), RolePart("v", q + kv, q + 2 * kv))
        if role == "gate_up":
            inner = layer.mlp.down_proj.in_features
            return (RolePart("gate", 0, inner), RolePart("up", inner, 2 * inner))
        return ()

    def couplings(self, model: nn.Module) -> list[Coupling]:
        """Per layer: MLP neurons, query heads (q rows + o columns) and key/value heads
        (k and v rows, implied by their group of query heads)."""
        prefix = self.layers_prefix(model) + "."
        heads, kv_heads, hd = _sizes(model.config)
        out = []
        for i, layer in enumerate(self.decoder_layers(model)):
            p = f"{prefix}{i}."
            qkv, q = f"{p}self_attn.qkv_proj", heads * hd
            out.append(Coupling(f"{p}self_attn", "heads", i, heads, (
                Member(qkv, "row", hd, 0), Member(f"{p}self_attn.o_proj", "col", hd),
            )))
            out.append(Coupling(f"{p}self_attn.kv", "kv-heads", i, kv_heads, (
                Member(qkv, "row", hd, q), Member(qkv, "row", hd, q + kv_heads * hd),
            ), implied_by=(f"{p}self_attn", heads // kv_heads)))
            inner = layer.mlp.down_proj.in_features
            out.append(Coupling(f"{p}mlp", "mlp", i, inner, (
                Member(f"{p}mlp.gate_up_proj", "row", 1, 0, activation=layer.mlp.activation_fn),
                Member(f"{p}mlp.gate_up_proj", "row", 1, inner),
                Member(f"{p}mlp.down_proj", "col"),
            )))
        return out
