"""Adapter for Meta's OPT decoder."""

from __future__ import annotations

from torch import nn

from llm_surgeon.model import ArchitectureAdapter


class OPTAdapter(ArchitectureAdapter):
    """``model.model.decoder.layers[i].{self_attn.{q,k,v,out}_proj, fc1, fc2}``."""

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
