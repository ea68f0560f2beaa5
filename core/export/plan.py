"""The compact plan of a structured-pruned model: per-layer sizes, sliced Linears, config.

:func:`compact_model` reads a model whose pruned weights are exact zeros and plans, without
changing or copying it, the smallest model with the same logits (``liveness`` says what can
go). Each remaining Linear keeps the rows of its kept heads / units; rows and columns that
can go inside them are dropped by storing the live sub-matrix with its index vectors
(``IndexedLinear``), so the compact model's parameters are exactly the weights that matter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from llm_surgeon.export.families import (
    AttentionShape,
    Family,
    attention_shape,
    check_supported,
    linears,
    role_paths,
)
from llm_surgeon.export.liveness import LayerLiveness, layer_liveness
from llm_surgeon.model.adapters import adapter_for


@dataclass
class LinearPlan:
    """One Linear of the compact model.

    ``rows`` ``(out_features,)`` / ``cols`` ``(in_features,)``: the original rows / columns of
    its kept heads or units (``None``: all). ``out_index`` ``(out_live,)`` / ``in_index``
    ``(in_live,)``: the live rows / columns of that slice when it is stored index-compressed.
    """

    role: str
    out_features: int
    in_features: int
    rows: Tensor | None = None
    cols: Tensor | None = None
    out_index: Tensor | None = None
    in_index: Tensor | None = None

    @property
    def compressed(self) -> bool:
        return self.out_index is not None

    @property
    def live_shape(self) -> tuple[int, int]:
        """``(out_live, in_live)`` of the stored weight."""
        if self.out_index is None or self.in_index is None:
            return self.out_features, self.in_features
        return len(self.out_index), len(self.in_index)

    def record(self) -> dict[str, int]:
        """The config record of an index-compressed Linear."""
        out_live, in_live = self.live_shape
        return {"in_features": self.in_features, "out_features": self.out_features,
                "in_live": in_live, "out_live": out_live}


@dataclass
class LayerPlan:
    """One decoder layer of the compact model: its liveness and its Linears by path.

    ``original_weights``: weights of the layer's prunable Linears in the pruned model.
    """

    live: LayerLiveness
    original_weights: int
    linears: dict[str, LinearPlan] = field(default_factory=dict)

    @property
    def intermediate_size(self) -> int:
        return len(self.live.neurons)

    @property
    def num_attention_heads(self) -> int:
        return len(self.live.query_heads)

    @property
    def num_key_value_heads(self) -> int:
        return len(self.live.kv_heads)

    @property
    def compressed(self) -> list[str]:
        """Paths of the index-compressed Linears."""
        return [path for path, lin in self.linears.items() if lin.compressed]


@dataclass
class CompactPlan:
    """The result of :func:`compact_model`.

    Attributes:
        model_type: of the pruned model.
        layers: one :class:`LayerPlan` per decoder layer.
        config: the compact model's config.
        plain: ``config`` is the original architecture's own config class (uniform result,
            no index-compressed Linear): the folder needs no code of its own.
        num_parameters: parameters of the compact model (tied weights once).
        original_num_parameters: parameters of the pruned model.
    """

    model_type: str
    layers: list[LayerPlan]
    config: Any
    plain: bool
    num_parameters: int
    original_num_parameters: int

    @property
    def original_linear_weights(self) -> int:
        """Weights of the prunable Linears in the decoder layers of the pruned model."""
        return sum(lp.original_weights for lp in self.layers)

    @property
    def linear_weights(self) -> int:
        """Weights of the compact model's Linears in the decoder layers (stored elements)."""
        return sum(math.prod(lin.live_shape) for lp in self.layers for lin in lp.linears.values())

    @property
    def real_size(self) -> float:
        """Fraction of the prunable weights the compact model keeps."""
        return self.linear_weights / self.original_linear_weights

    @property
    def intermediate_sizes(self) -> list[int]:
        return [lp.intermediate_size for lp in self.layers]

    @property
    def num_attention_heads(self) -> list[int]:
        return [lp.num_attention_heads for lp in self.layers]

    @property
    def num_key_value_heads(self) -> list[int]:
        return [lp.num_key_value_heads for lp in self.layers]

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``export.json``: sizes per layer and parameter counts."""
        return {
            "model_type": self.model_type,
            "compact_model_type": self.config.model_type,
            "plain": self.plain,
            "num_parameters": self.num_parameters,
            "original_num_parameters": self.original_num_parameters,
            "linear_weights": self.linear_weights,
            "original_linear_weights": self.original_linear_weights,
            "real_size": self.real_size,
            "layers": [
                {"intermediate_size": lp.intermediate_size, "heads": lp.num_attention_heads,
                 "kv_heads": lp.num_key_value_heads, "padding_heads": lp.live.padding_heads,
                 "compressed": {p: lp.linears[p].record() for p in lp.compressed}}
                for lp in self.layers
            ],
        }

    def summary(self) -> str:
        """A small text table: per layer MLP width, heads (padding), kv heads, compressed."""
        kind = "plain config" if self.plain else f"own modeling code ({self.config.model_type})"
        lines = [f"{self.model_type}: {self.original_num_parameters:,} -> {self.num_parameters:,} "
                 f"parameters (real size {self.real_size:.4f} of the prunable weights); {kind}",
                 "layer   mlp  heads(pad)  kv  index-compressed Linears"]
        for i, lp in enumerate(self.layers):
            heads = f"{lp.num_attention_heads}({lp.live.padding_heads})"
            lines.append(f"{i:5d} {lp.intermediate_size:5d} {heads:>11} {lp.num_key_value_heads:3d}  "
                         f"{len(lp.compressed)}")
        return "\n".join(lines)


def _head_rows(heads: list[int], head_dim: int, device: torch.device) -> Tensor:
    """Row indices ``(len(heads) * head_dim,)`` of whole heads."""
    idx = torch.tensor(heads, dtype=torch.long, device=device)
    return (idx[:, None] * head_dim + torch.arange(head_dim, device=device)).flatten()


def _slices(live: LayerLiveness, family: Family, shape: AttentionShape, device: torch.device
            ) -> dict[str, tuple[Tensor | None, Tensor | None]]:
    """``role -> (rows, cols)`` kept by whole heads and units; roles of removed blocks absent."""
    out: dict[str, tuple[Tensor | None, Tensor | None]] = {}
    if live.query_heads:
        q_rows = _head_rows(live.query_heads, shape.head_dim, device)
        kv_rows = _head_rows(live.kv_heads, shape.head_dim, device)
        out |= {"q": (q_rows, None), "k": (kv_rows, None), "v": (kv_rows, None), "o": (None, q_rows)}
    if len(live.neurons):
        out |= {role: (live.neurons, None) for role in family.mlp_in}
        out[family.mlp_out] = (None, live.neurons)
    return out


def _linear_plan(role: str, live: LayerLiveness, rows: Tensor | None, cols: Tensor | None
                 ) -> LinearPlan:
    keep_rows = ~live.drop_rows[role]
    keep_cols = ~live.drop_cols[role]
    if rows is not None:
        keep_rows = keep_rows[rows]
    if cols is not None:
        keep_cols = keep_cols[cols]
    plan = LinearPlan(role, len(keep_rows), len(keep_cols), rows, cols)
    if not (keep_rows.all() and keep_cols.all()):
        plan.out_index = keep_rows.nonzero().flatten()
        plan.in_index = keep_cols.nonzero().flatten()
    return plan


def layer_linears(model: nn.Module) -> tuple[Family, dict[str, str], list[tuple[nn.Module, dict]]]:
    """The family, ``role -> path`` and every decoder layer with its ``role -> Linear`` map."""
    family = check_supported(model.config)
    adapter = adapter_for(model)
    paths = role_paths(adapter)
    return family, paths, [(layer, linears(layer, paths, family))
                           for layer in adapter.decoder_layers(model)]


def plan_layers(model: nn.Module) -> tuple[Family, AttentionShape, list[LayerPlan]]:
    """The family, the attention shape and the plan of every decoder layer."""
    family, paths, layers = layer_linears(model)
    shape = attention_shape(model.config, family)
    planned = []
    for layer, lin in layers:
        live = layer_liveness(layer, lin, family, shape)
        lp = LayerPlan(live, sum(module.weight.numel() for module in lin.values()))
        for role, (rows, cols) in _slices(live, family, shape, lin["o"].weight.device).items():
            lp.linears[paths[role]] = _linear_plan(role, live, rows, cols)
        planned.append(lp)
    return family, shape, planned
