"""An llm-surgeon architecture adapter for GPT-NeoX (EleutherAI's Pythia, GPT-NeoX-20B).

A GPT-NeoX layer has one fused ``attention.query_key_value`` Linear whose output rows
are grouped by head: head ``h`` owns rows ``3 * h * head_size ...`` holding its query,
key and value rows, in that order. Its MLP is ``dense_h_to_4h`` -> ``dense_4h_to_h``.
Attention and MLP run in parallel on two normalisations of the same input.
"""

from __future__ import annotations

from torch import nn

from llm_surgeon import ArchitectureAdapter, hookimpl
from llm_surgeon.model import Coupling, Member


class GPTNeoXAdapter(ArchitectureAdapter):
    """``model.gpt_neox.layers[i].{attention.{query_key_value, dense}, mlp.{dense_h_to_4h, dense_4h_to_h}}``."""

    linear_roles = (
        ("attention.query_key_value", "qkv"),  # q, k and v interleaved per head: no role parts
        ("attention.dense", "o"),
        ("mlp.dense_h_to_4h", "fc1"),
        ("mlp.dense_4h_to_h", "fc2"),
    )
    # Each module reads its own input (two layer norms), so each is its own group.
    sequential_groups = (("qkv",), ("o",), ("fc1",), ("fc2",))

    def decoder_layers(self, model: nn.Module) -> nn.ModuleList:
        return model.gpt_neox.layers

    def couplings(self, model: nn.Module) -> list[Coupling]:
        """Per layer: heads (``3 * head_size`` rows of ``query_key_value``, ``head_size``
        columns of ``dense``) and MLP neurons."""
        prefix = self.layers_prefix(model) + "."
        heads = model.config.num_attention_heads
        head_size = model.config.hidden_size // heads
        inner = model.config.intermediate_size
        out = []
        for i, layer in enumerate(self.decoder_layers(model)):
            p = f"{prefix}{i}."
            out.append(Coupling(f"{p}attention", "heads", i, heads, (
                Member(f"{p}attention.query_key_value", "row", 3 * head_size),
                Member(f"{p}attention.dense", "col", head_size),
            )))
            out.append(Coupling(f"{p}mlp", "mlp", i, inner, (
                Member(f"{p}mlp.dense_h_to_4h", "row", activation=layer.mlp.act),
                Member(f"{p}mlp.dense_4h_to_h", "col"),
            )))
        return out


@hookimpl
def register_architectures(register):
    register("gpt_neox", GPTNeoXAdapter, description="gpt_neox: EleutherAI GPT-NeoX / Pythia (example plugin)")
