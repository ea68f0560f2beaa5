"""Adapter for the Llama family: Llama, Mistral, Qwen2 (same module layout)."""

from __future__ import annotations

from torch import nn

from llm_surgeon.model import ArchitectureAdapter


class LlamaAdapter(ArchitectureAdapter):
    """``model.model.layers[i].{self_attn.{q,k,v,o}_proj, mlp.{gate,up,down}_proj}``."""

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
