"""Adapter for the Llama family: Llama, Mistral, Qwen2 (same module layout)."""

from __future__ import annotations

from torch import nn

from llm_surgeon.model import ArchitectureAdapter, Coupling, Member, attention_couplings


class LlamaAdapter(ArchitectureAdapter):
    """``model.model.layers[i].{self_attn.{q,k,v,o}_proj, mlp.{gate,up,down}_proj}``.

    Couplings per layer: the gated MLP's neurons (``act(gate) * up``, read by ``down``),
    the query heads (``q`` rows, ``o`` columns) and the key/value heads (``k`` and ``v``
    rows, shared by ``num_attention_heads / num_key_value_heads`` query heads, RoPE).
    """

    model_types = ("llama", "mistral", "qwen2")
    linear_roles = (
        ("self_attn.q_proj", "q"),
        ("self_attn.k_proj", "k"),
        ("self_attn.v_proj", "v"),
        ("self_attn.o_proj", "o"),
        ("mlp.gate_proj", "gate"),
        ("mlp.up_proj", "up"),
        ("mlp.down_proj", "down"),
    )
    sequential_groups = (("q", "k", "v"), ("o",), ("gate", "up"), ("down",))

    def decoder_layers(self, model: nn.Module) -> nn.ModuleList:
        return model.model.layers

    def couplings(self, model: nn.Module) -> list[Coupling]:
        prefix = self.layers_prefix(model)
        found: list[Coupling] = []
        for i, layer in enumerate(self.decoder_layers(model)):
            p = f"{prefix}.{i}"
            # Head sizes from the attention module (its head_dim may differ from
            # hidden / heads, as in Gemma 3; multimodal configs nest the text config).
            attn = layer.self_attn
            head_dim = attn.head_dim
            heads, kv_heads = attn.q_proj.out_features // head_dim, attn.k_proj.out_features // head_dim
            names = tuple(f"{p}.self_attn.{r}_proj" for r in "qkvo")
            head_norm = getattr(attn, "k_norm", None) is not None
            found += attention_couplings(f"{p}.self_attn", i, names, heads, kv_heads, head_dim, rotary=True,
                                         head_norm=head_norm)
            found.append(Coupling(f"{p}.mlp", "mlp", i, layer.mlp.gate_proj.out_features, (
                Member(f"{p}.mlp.gate_proj", "row", activation=layer.mlp.act_fn),
                Member(f"{p}.mlp.up_proj", "row"),
                Member(f"{p}.mlp.down_proj", "col"),
            )))
        return found
