"""Adapter for GPT-2: transformers' ``Conv1D`` modules and the fused ``c_attn``.

GPT-2 stores each projection as a ``Conv1D`` whose weight is ``(d_in, d_out)``
(``x @ W + b``). :class:`~llm_surgeon.model.PrunableModule` presents it transposed, as
``(d_out, d_in)``, so curvature, structures and updates see ``theta = [W | b]`` exactly
as for an ``nn.Linear``. ``c_attn`` computes queries, keys and values in one module:
its output rows are ``q | k | v``, ``n_embd`` rows each, declared as role parts.
"""

from __future__ import annotations

from torch import nn

from llm_surgeon.model import ArchitectureAdapter, Coupling, Member, RolePart


class GPT2Adapter(ArchitectureAdapter):
    """``model.transformer.h[i].{attn.{c_attn, c_proj}, mlp.{c_fc, c_proj}}``."""

    linear_roles = (
        ("attn.c_attn", "qkv"),
        ("attn.c_proj", "o"),
        ("mlp.c_fc", "fc1"),
        ("mlp.c_proj", "fc2"),
    )
    sequential_groups = (("qkv",), ("o",), ("fc1",), ("fc2",))

    def decoder_layers(self, model: nn.Module) -> nn.ModuleList:
        return model.transformer.h

    def role_parts(self, layer: nn.Module, path: str, role: str) -> tuple[RolePart, ...]:
        if role != "qkv":
            return ()
        d = layer.attn.embed_dim
        return (RolePart("q", 0, d), RolePart("k", d, 2 * d), RolePart("v", 2 * d, 3 * d))

    def couplings(self, model: nn.Module) -> list[Coupling]:
        """Per layer: the MLP neurons (``c_fc`` rows, ``c_proj`` columns) and the heads
        (their ``q``, ``k`` and ``v`` rows of ``c_attn`` and ``c_proj`` columns)."""
        prefix = self.layers_prefix(model) + "."
        out = []
        for i, layer in enumerate(self.decoder_layers(model)):
            p = f"{prefix}{i}."
            d, heads, width = layer.attn.embed_dim, layer.attn.num_heads, layer.attn.head_dim
            out.append(Coupling(f"{p}attn", "heads", i, heads, (
                Member(f"{p}attn.c_attn", "row", width, 0),
                Member(f"{p}attn.c_attn", "row", width, d),
                Member(f"{p}attn.c_attn", "row", width, 2 * d),
                Member(f"{p}attn.c_proj", "col", width),
            )))
            fc = layer.mlp.c_fc  # a Conv1D (nf outputs), or an nn.Linear twin
            inner = fc.nf if hasattr(fc, "nf") else fc.out_features
            out.append(Coupling(f"{p}mlp", "mlp", i, inner, (
                Member(f"{p}mlp.c_fc", "row", activation=layer.mlp.act), Member(f"{p}mlp.c_proj", "col"),
            )))
        return out
