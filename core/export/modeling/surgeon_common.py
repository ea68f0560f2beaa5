"""Modules and config helpers shared by the compact (``surgeon_*``) config and model files.

Copied next to the weights of a compact export and imported there with a relative import, so it
depends on torch only (no transformers, no llm_surgeon).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

LAYER_FIELDS = (
    "layer_intermediate_sizes",
    "layer_num_attention_heads",
    "layer_num_key_value_heads",
    "layer_compressed_linears",
)


def fill_layer_fields(config: Any, intermediate_size: int) -> None:
    """Default missing per-layer lists to the global (uniform) sizes."""
    n = config.num_hidden_layers
    if config.layer_intermediate_sizes is None:
        config.layer_intermediate_sizes = [intermediate_size] * n
    if config.layer_num_attention_heads is None:
        config.layer_num_attention_heads = [config.num_attention_heads] * n
    if config.layer_num_key_value_heads is None:
        kv = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
        config.layer_num_key_value_heads = [kv] * n
    if config.layer_compressed_linears is None:
        config.layer_compressed_linears = [{} for _ in range(n)]


def check_layer_fields(config: Any) -> None:
    """Raise ``ValueError`` unless the per-layer lists describe a buildable model."""
    n = config.num_hidden_layers
    for name in LAYER_FIELDS:
        if len(getattr(config, name)) != n:
            raise ValueError(f"`{name}` must have one entry per layer ({n}).")
    heads = zip(config.layer_num_attention_heads, config.layer_num_key_value_heads, strict=True)
    for i, (q, kv) in enumerate(heads):
        if (q == 0) != (kv == 0) or (kv and q % kv):
            raise ValueError(f"layer {i}: {q} query heads cannot share {kv} key/value heads.")


class IndexedLinear(nn.Module):
    """A Linear that reads only some inputs and writes only some outputs.

    Equivalent to a dense ``nn.Linear(in_features, out_features)`` whose weight is zero outside
    the rows ``out_index`` and the columns ``in_index``: it gathers the live inputs, multiplies
    by the live sub-matrix and scatters into the live outputs (skipping a gather or scatter
    that would keep everything).

    Parameters / buffers:
        weight: ``(out_live, in_live)``, the live sub-matrix.
        bias: ``(out_features,)`` or None; the full bias (dead outputs still get their bias).
        in_index: ``(in_live,)`` int64, the inputs that are read (increasing).
        out_index: ``(out_live,)`` int64, the outputs that are written (increasing).
    """

    def __init__(
        self, in_features: int, out_features: int, in_live: int, out_live: int, bias: bool
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.zeros(out_live, in_live))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        self.register_buffer("in_index", torch.arange(in_live, dtype=torch.long))
        self.register_buffer("out_index", torch.arange(out_live, dtype=torch.long))
        self.gather = in_live < in_features
        self.scatter = out_live < out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(..., in_features)`` -> ``(..., out_features)``."""
        if self.gather:
            x = x.index_select(-1, self.in_index)
        if not self.scatter:
            return nn.functional.linear(x, self.weight, self.bias)
        y = nn.functional.linear(x, self.weight)
        if self.bias is None:
            out = y.new_zeros(*y.shape[:-1], self.out_features)
        else:
            out = self.bias.expand(*y.shape[:-1], self.out_features).clone()
        return out.index_add_(-1, self.out_index, y)

    def extra_repr(self) -> str:
        out_live, in_live = self.weight.shape
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"live=({out_live}, {in_live}), bias={self.bias is not None}"
        )


class ConstantOutput(nn.Module):
    """A block with no live units: ignores its input and returns its bias (or zeros).

    Replaces an MLP of width 0 (output = the down-projection bias) or, in OPT, an ``fc1`` of
    width 0 (``out_features=0``) and ``fc2`` (output = its bias).
    """

    def __init__(self, out_features: int, bias: bool) -> None:
        super().__init__()
        self.out_features = out_features
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(..., any)`` -> ``(..., out_features)``."""
        out = x.new_zeros(*x.shape[:-1], self.out_features)
        return out if self.bias is None else out + self.bias


class NoHeadAttention(nn.Module):
    """An attention block whose heads were all removed: returns the output-projection bias.

    It still appends ``(batch, 1, seq, 1)`` zero key/value placeholders to the cache: models
    read the number of cached tokens (positions, masks) from a layer's keys, usually layer 0's,
    and an empty tensor would count as no tokens.
    """

    def __init__(self, hidden_size: int, layer_idx: int, bias: bool) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.out = ConstantOutput(hidden_size, bias)

    def forward(
        self, hidden_states: torch.Tensor, cache: Any = None, **kwargs: Any
    ) -> tuple[torch.Tensor, None]:
        """``hidden_states``: ``(batch, seq, hidden)`` -> ``((batch, seq, hidden), None)``."""
        if cache is not None:
            batch, seq = hidden_states.shape[:2]
            placeholder = hidden_states.new_zeros(batch, 1, seq, 1)
            cache.update(placeholder, placeholder.clone(), self.layer_idx)
        return self.out(hidden_states), None


def replace_module(root: nn.Module, path: str, new: nn.Module) -> None:
    """Set the submodule at dotted ``path`` (e.g. ``"self_attn.q_proj"``) of ``root`` to ``new``."""
    parent_path, _, name = path.rpartition(".")
    parent = root.get_submodule(parent_path) if parent_path else root
    setattr(parent, name, new)


def index_linears(layer: nn.Module, records: dict[str, dict[str, int]]) -> None:
    """Swap the dense Linears of ``layer`` named in ``records`` for ``IndexedLinear``s.

    ``records`` maps a path inside the layer to ``{"in_features", "out_features", "in_live",
    "out_live"}``; the bias flag is taken from the Linear being replaced.
    """
    for path, rec in records.items():
        dense = layer.get_submodule(path)
        new = IndexedLinear(
            rec["in_features"],
            rec["out_features"],
            rec["in_live"],
            rec["out_live"],
            bias=dense.bias is not None,
        )
        replace_module(layer, path, new)
