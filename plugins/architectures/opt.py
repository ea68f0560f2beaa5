"""Adapter for Meta's OPT decoder."""

from __future__ import annotations

from torch import nn

from llm_surgeon.model import ArchitectureAdapter, Coupling, Member, attention_couplings


class OPTAdapter(ArchitectureAdapter):
    """``model.model.decoder.layers[i].{self_attn.{q,k,v,out}_proj, fc1, fc2}``.

    Couplings per layer: the MLP's neurons (``act(fc1)``, read by ``fc2``) and the heads
    (``q``/``k``/``v`` rows, ``out_proj`` columns; one key/value head per query head, no RoPE).
    """

    linear_roles = (
        ("self_attn.q_proj", "q"),
        ("self_attn.k_proj", "k"),
        ("self_attn.v_proj", "v"),
        ("self_attn.out_proj", "o"),
        ("fc1", "fc1"),
        ("fc2", "fc2"),
    )
    sequential_groups = (("q", "k", "v"), ("o",), ("fc1",), ("fc2",))

    def decoder_layers(self, model: nn.Module) -> nn.ModuleList:
        return model.model.decoder.layers

    def couplings(self, model: nn.Module) -> list[Coupling]:
        heads = model.config.num_attention_heads
        prefix = self.layers_prefix(model)
        found: list[Coupling] = []
        for i, layer in enumerate(self.decoder_layers(model)):
            p = f"{prefix}.{i}"
            head_dim = layer.self_attn.q_proj.out_features // heads
            names = tuple(f"{p}.self_attn.{r}_proj" for r in ("q", "k", "v", "out"))
            found += attention_couplings(f"{p}.self_attn", i, names, heads, heads, head_dim, rotary=False)
            found.append(Coupling(f"{p}.mlp", "mlp", i, layer.fc1.out_features, (
                Member(f"{p}.fc1", "row", activation=layer.activation_fn),
                Member(f"{p}.fc2", "col"),
            )))
        return found
