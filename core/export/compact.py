"""Build the compact model: plan it (:func:`compact_model`), then copy the live weights.

``build_compact(model)`` returns a new model with the same logits as ``model`` (up to float
rounding: the compact matrix products sum fewer zeros) whose parameters are only the weights
that matter; ``model`` is left unchanged.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from llm_surgeon.export.config import plain_config, surgeon_config
from llm_surgeon.export.families import Family
from llm_surgeon.export.plan import CompactPlan, LayerPlan, LinearPlan, layer_linears, plan_layers


def _empty_model(model_cls: type, config: object) -> nn.Module:
    """``model_cls(config)`` on the meta device (no memory, no initialisation)."""
    with torch.device("meta"):
        return model_cls(config)


def _compact_class(model: nn.Module, plan: CompactPlan, family: Family) -> type:
    return type(model) if plan.plain else family.model_cls


@torch.no_grad()
def compact_model(model: nn.Module) -> CompactPlan:
    """Plan the compact model of ``model`` (nothing is modified or copied).

    Args:
        model: a Llama / Mistral / Qwen2 / OPT causal LM whose pruned weights are exact zeros.

    Raises:
        UnsupportedArchitectureError: for other architectures, naming what is not supported.
    """
    family, shape, layers = plan_layers(model)
    config = plain_config(model.config, layers, shape)
    plain = config is not None
    if config is None:
        config = surgeon_config(model.config, family, layers, shape)
    config._attn_implementation = model.config._attn_implementation
    plan = CompactPlan(model.config.model_type, layers, config, plain, 0,
                       sum(p.numel() for p in model.parameters()))
    empty = _empty_model(_compact_class(model, plan, family), config)
    plan.num_parameters = sum(p.numel() for p in empty.parameters())
    return plan


def _linear_state(lin: nn.Linear, plan: LinearPlan, out_bias: Tensor | None) -> dict[str, Tensor]:
    """``weight`` (and ``bias``, ``in_index``, ``out_index``) of one compact Linear."""
    weight, bias = lin.weight, lin.bias if out_bias is None else out_bias
    if plan.rows is not None:
        weight = weight[plan.rows]
        bias = None if bias is None else bias[plan.rows]
    if plan.cols is not None:
        weight = weight[:, plan.cols]
    state = {}
    if plan.compressed:
        weight = weight[plan.out_index][:, plan.in_index]
        state |= {"out_index": plan.out_index.clone(), "in_index": plan.in_index.clone()}
    state["weight"] = weight.contiguous().clone()
    if bias is not None:
        state["bias"] = bias.clone()
    return state


def _layer_state(layer: nn.Module, lin: dict[str, nn.Linear], lp: LayerPlan, family: Family
                 ) -> dict[str, Tensor]:
    """The compact layer's state dict, from the pruned ``layer``."""
    paths = {id(module): name for name, module in layer.named_modules()}
    state: dict[str, Tensor] = {}
    folded = lp.live.mlp_out_bias
    for path, plan in lp.linears.items():
        out_bias = folded if plan.role == family.mlp_out else None
        for name, tensor in _linear_state(lin[plan.role], plan, out_bias).items():
            state[f"{path}.{name}"] = tensor
    o_bias = lin["o"].bias
    if not lp.num_attention_heads and o_bias is not None:
        state[family.no_heads_bias] = o_bias.clone()
    out_bias = lin[family.mlp_out].bias
    if not lp.intermediate_size and out_bias is not None:
        state[family.no_mlp_bias] = (folded if folded is not None else out_bias).clone()
    linear_paths = {paths[id(module)] for module in lin.values()}
    for name, tensor in layer.state_dict().items():
        if name.rpartition(".")[0] not in linear_paths:  # norms and anything else
            state[name] = tensor.clone()
    return state


@torch.no_grad()
def build_compact(model: nn.Module, plan: CompactPlan | None = None) -> nn.Module:
    """The compact model of ``plan`` (default: ``compact_model(model)``), in eval mode.

    Same dtype and device as ``model``; ``model`` is left unchanged.
    """
    if plan is None:
        plan = compact_model(model)
    family, _, layers = layer_linears(model)
    compact = _empty_model(_compact_class(model, plan, family), plan.config)
    source = model.state_dict()
    layer_prefix = {id(layer): name for name, layer in model.named_modules()}
    state = {}
    for (layer, lin), lp in zip(layers, plan.layers, strict=True):
        prefix = layer_prefix[id(layer)]
        for name, tensor in _layer_state(layer, lin, lp, family).items():
            state[f"{prefix}.{name}"] = tensor
    layer_names = tuple(f"{layer_prefix[id(layer)]}." for layer, _ in layers)
    for name in compact.state_dict():
        if not name.startswith(layer_names):
            state[name] = source[name].clone()
    compact.load_state_dict(state, strict=True, assign=True)
    _copy_buffers(model, compact)
    compact.tie_weights()
    if getattr(model, "generation_config", None) is not None:
        compact.generation_config = model.generation_config
    return compact.eval()


def _copy_buffers(model: nn.Module, compact: nn.Module) -> None:
    """Non-persistent buffers (rotary frequencies) are not in the state dict: copy them."""
    buffers = dict(model.named_buffers())
    for name, buf in list(compact.named_buffers()):
        if buf.is_meta:
            module_path, _, attr = name.rpartition(".")
            compact.get_submodule(module_path)._buffers[attr] = buffers[name].clone()
