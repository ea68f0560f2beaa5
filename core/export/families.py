"""The per-architecture part of the compact export: one :class:`Family` per model type.

Which Linear plays which role (``q``, ``k``, ``v``, ``o``, ``gate``, ``up``, ``down``,
``fc1``, ``fc2``) and where the decoder layers are comes from the model's architecture
adapter (``linear_roles``, ``decoder_layers``). A family adds what only the export needs:
which roles form the MLP units and the heads, the activation, whether queries and keys are
rotated in pairs (RoPE), the attention shape, and the compact model classes.

ARCHITECTURE-SPECIFIC: this module and the compact model classes in
``llm_surgeon.export.modeling`` are the only places that know the Llama family and OPT.
Once adapters declare couplings (``ArchitectureAdapter.couplings``: ``mlp`` with gate/up rows
and down columns, ``heads`` with q rows and o columns of width ``head_dim``, ``kv-heads``
implied by the heads), :class:`AttentionShape` and the role tuples below can be read from
them instead (see :func:`attention_shape`).
"""

from __future__ import annotations

from typing import Any

import attrs
from torch import nn

from llm_surgeon.errors import UnsupportedArchitectureError
from llm_surgeon.export.modeling.configuration_surgeon_llama import (
    SurgeonLlamaConfig,
    SurgeonMistralConfig,
    SurgeonQwen2Config,
)
from llm_surgeon.export.modeling.configuration_surgeon_opt import SurgeonOPTConfig
from llm_surgeon.export.modeling.modeling_surgeon_llama import (
    SurgeonLlamaForCausalLM,
    SurgeonMistralForCausalLM,
    SurgeonQwen2ForCausalLM,
)
from llm_surgeon.export.modeling.modeling_surgeon_opt import SurgeonOPTForCausalLM


@attrs.frozen
class AttentionShape:
    """Heads of one attention block: ``heads`` query heads share ``kv_heads`` key/value heads.

    Attributes:
        heads: query heads; q rows and o columns are ``(heads * head_dim)``.
        kv_heads: key/value heads; k and v rows are ``(kv_heads * head_dim)``.
        head_dim: rows per head.
        rope_pairs: dimensions ``d`` and ``d + head_dim / 2`` of queries and keys are rotated
            together (rotary embeddings over the whole head).
    """

    heads: int
    kv_heads: int
    head_dim: int
    rope_pairs: bool

    @property
    def group_size(self) -> int:
        """Query heads per key/value head."""
        return self.heads // self.kv_heads


@attrs.frozen
class Family:
    """What the compact export knows about one family.

    Attributes:
        mlp_in: roles whose rows are MLP units; the first one goes through ``act``.
        mlp_out: the role whose columns are MLP units.
        gated: the unit is ``act(first) * second`` (Llama) rather than ``act(first)`` (OPT).
        act: path of the MLP activation inside a decoder layer.
        rope: queries and keys get rotary embeddings (pairs ``d``, ``d + head_dim / 2``).
        no_heads_bias: state-dict name (inside a layer) of the output bias of a layer
            without heads (``NoHeadAttention``).
        no_mlp_bias: name of the output bias of a layer without MLP units.
        config_cls, model_cls: the compact (per-layer sizes) config and model classes.
    """

    mlp_in: tuple[str, ...]
    mlp_out: str
    gated: bool
    act: str
    rope: bool
    no_heads_bias: str
    no_mlp_bias: str
    config_cls: type
    model_cls: type

    attention: tuple[str, str, str, str] = ("q", "k", "v", "o")

    @property
    def roles(self) -> tuple[str, ...]:
        """Every role the export slices."""
        return (*self.attention, *self.mlp_in, self.mlp_out)


def _llama_like(config_cls: type, model_cls: type) -> Family:
    return Family(mlp_in=("gate", "up"), mlp_out="down", gated=True, act="mlp.act_fn", rope=True,
                  no_heads_bias="self_attn.out.bias", no_mlp_bias="mlp.bias",
                  config_cls=config_cls, model_cls=model_cls)


#: ``model_type`` -> family. ARCHITECTURE-SPECIFIC (see the module docstring).
FAMILIES: dict[str, Family] = {
    "llama": _llama_like(SurgeonLlamaConfig, SurgeonLlamaForCausalLM),
    "mistral": _llama_like(SurgeonMistralConfig, SurgeonMistralForCausalLM),
    "qwen2": _llama_like(SurgeonQwen2Config, SurgeonQwen2ForCausalLM),
    "opt": Family(mlp_in=("fc1",), mlp_out="fc2", gated=False, act="activation_fn", rope=False,
                  no_heads_bias="self_attn.out.bias", no_mlp_bias="fc2.bias",
                  config_cls=SurgeonOPTConfig, model_cls=SurgeonOPTForCausalLM),
}

#: ``model_type`` of a compact folder -> its model class.
COMPACT_MODELS: dict[str, type] = {f.config_cls.model_type: f.model_cls for f in FAMILIES.values()}


def check_supported(config: Any) -> Family:
    """The family of a model's config, or an error naming what is not supported.

    Raises:
        UnsupportedArchitectureError: another ``model_type``, an already compact model, or
            rotary embeddings over part of the head only.
    """
    model_type = getattr(config, "model_type", None)
    if model_type in COMPACT_MODELS:
        raise UnsupportedArchitectureError(
            f"model_type {model_type!r} is already a compact export; export the zeroed model instead")
    if model_type not in FAMILIES:
        raise UnsupportedArchitectureError(
            f"compact export does not support model_type {model_type!r} "
            f"(supported: {', '.join(FAMILIES)}); save it with --save zeroed")
    rope = getattr(config, "rope_parameters", None) or {}
    if FAMILIES[model_type].rope and rope.get("partial_rotary_factor", 1.0) != 1.0:
        raise UnsupportedArchitectureError(
            f"compact export does not support partial rotary embeddings "
            f"(partial_rotary_factor={rope['partial_rotary_factor']})")
    return FAMILIES[model_type]


def attention_shape(config: Any, family: Family) -> AttentionShape:
    """Heads of every layer of the (unpruned) model, from its config.

    OPT derives ``head_dim`` from ``hidden_size / num_attention_heads`` and has one key/value
    head per query head. (With adapter couplings: ``heads.size``, ``kv-heads.size`` and the
    members' ``width``.)
    """
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) if family.rope else None
    return AttentionShape(heads, kv_heads, head_dim or config.hidden_size // heads, family.rope)


def role_paths(adapter: Any) -> dict[str, str]:
    """``role -> path inside a decoder layer`` from an architecture adapter's ``linear_roles``."""
    return {role: path for path, role in adapter.linear_roles}


def linears(layer: nn.Module, paths: dict[str, str], family: Family) -> dict[str, nn.Linear]:
    """``role -> nn.Linear`` of one decoder layer, for every role of ``family``."""
    missing = [role for role in family.roles if role not in paths]
    if missing:
        raise UnsupportedArchitectureError(f"the architecture adapter declares no roles {missing}")
    return {role: layer.get_submodule(paths[role]) for role in family.roles}
