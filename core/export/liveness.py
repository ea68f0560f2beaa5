"""What a decoder layer can lose without changing any logit, read from its exact zeros.

A row of a Linear can go when its weights are zero (its output is then its bias, which is
kept) or when its output is never used; a column can go when its weights are zero or its
input is always zero. Whole MLP units and heads go when their contribution is zero:

* MLP unit ``i``: its down (``fc2``) column is zero, or its activation is identically zero:
  the gate (``fc1``) row is zero and ``act(bias_i) == 0``, or (gated) the up row and bias are
  zero. OPT units whose ``fc1`` row is zero but ``act(b_i) != 0`` are constant: their
  contribution ``act(b_i) fc2[:, i]`` is folded into ``fc2``'s bias.
* head ``h``: every one of its output-projection columns ``(h, d)`` is zero or reads a value
  dimension ``(g, d)`` that is identically zero (v row and bias zero).
* v row ``(g, d)`` is unused when every head of group ``g`` ignores output column ``(h, d)``.
* q rows of a pair ``p`` (``d`` and ``d + head_dim / 2`` under RoPE, else ``d`` alone) are
  unused when the key pair is identically zero; k rows of ``p`` when the query pair is
  identically zero in every live head of the group; all q rows of a dead head.

Tensors: ``(H, hd)`` masks are per query head and head dimension, ``(G, hd)`` per key/value
head. Every mask here is ``True`` where something can go.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
import torch
from torch import Tensor, nn

from llm_surgeon.export.families import AttentionShape, Family


def zero_rows(lin: nn.Linear) -> Tensor:
    """``(out,)`` rows whose weights are all zero."""
    return (lin.weight == 0).all(dim=1)


def zero_cols(lin: nn.Linear) -> Tensor:
    """``(in,)`` columns whose weights are all zero."""
    return (lin.weight == 0).all(dim=0)


def silent_rows(lin: nn.Linear) -> Tensor:
    """``(out,)`` outputs that are identically zero: weights and bias zero."""
    if lin.bias is None:
        return zero_rows(lin)
    return zero_rows(lin) & (lin.bias == 0)


@attrs.frozen
class LayerLiveness:
    """What one decoder layer keeps.

    Attributes:
        query_heads: kept query heads (original indices), grouped by key/value head; each
            kept group has the same number of heads, padded with dead heads.
        kv_heads: kept key/value heads.
        padding_heads: how many of ``query_heads`` are dead padding.
        neurons: ``(units,)`` kept MLP units.
        mlp_out_bias: the MLP output bias with constant units folded in (``None``: unchanged).
        drop_rows, drop_cols: ``role -> (out,)`` / ``(in,)`` bool at the original shapes:
            rows and columns that can go although their unit or head stays.
    """

    query_heads: list[int]
    kv_heads: list[int]
    padding_heads: int
    neurons: Tensor
    mlp_out_bias: Tensor | None
    drop_rows: dict[str, Tensor]
    drop_cols: dict[str, Tensor]


def _pairs(silent: Tensor, rope: bool) -> Tensor:
    """``(n, hd)``: ``True`` where the dimension's whole rotation pair is silent."""
    if not rope:
        return silent
    half = silent.shape[1] // 2
    both = silent[:, :half] & silent[:, half:]
    return torch.cat([both, both], dim=1)


def _attention(lin: dict[str, nn.Linear], shape: AttentionShape) -> tuple[Tensor, dict, dict]:
    """Dead query heads ``(H,)`` and the drop masks of q, k, v (rows) and o (columns)."""
    heads, groups, hd = shape.heads, shape.kv_heads, shape.head_dim
    group = torch.arange(heads, device=lin["o"].weight.device) // shape.group_size
    v_silent = silent_rows(lin["v"]).view(groups, hd)
    o_drop = zero_cols(lin["o"]).view(heads, hd) | v_silent[group]  # (H, hd)
    head_dead = o_drop.all(dim=1)
    v_unused = o_drop.view(groups, shape.group_size, hd).all(dim=1)  # (G, hd)
    q_pair = _pairs(silent_rows(lin["q"]).view(heads, hd), shape.rope_pairs) | head_dead[:, None]
    k_pair = _pairs(silent_rows(lin["k"]).view(groups, hd), shape.rope_pairs)
    k_unused = q_pair.view(groups, shape.group_size, hd).all(dim=1)
    rows = {
        "q": (zero_rows(lin["q"]).view(heads, hd) | head_dead[:, None] | k_pair[group]).flatten(),
        "k": zero_rows(lin["k"]) | k_unused.flatten(),
        "v": zero_rows(lin["v"]) | v_unused.flatten(),
        "o": zero_rows(lin["o"]),
    }
    return head_dead, rows, {"o": o_drop.flatten()}


def _keep_heads(head_dead: Tensor, shape: AttentionShape) -> tuple[list[int], list[int], int]:
    """Kept query heads (grouped), kept key/value heads, padding count.

    Grouped-query attention needs the same number of query heads per key/value head, so a
    group keeps dead heads as padding up to the largest group's count of live heads.
    """
    dead = head_dead.tolist()
    n = shape.group_size
    groups = [list(range(g * n, (g + 1) * n)) for g in range(shape.kv_heads)]
    live = [[h for h in group if not dead[h]] for group in groups]
    per_group = max(len(heads) for heads in live)
    query_heads: list[int] = []
    kv_heads: list[int] = []
    for g, group in enumerate(groups):
        if live[g]:
            padding = [h for h in group if dead[h]][: per_group - len(live[g])]
            query_heads += sorted(live[g] + padding)
            kv_heads.append(g)
    return query_heads, kv_heads, len(query_heads) - sum(map(len, live))


def _mlp(lin: dict[str, nn.Linear], family: Family, act: Callable[[Tensor], Tensor]
         ) -> tuple[Tensor, Tensor | None, dict]:
    """Kept MLP units, the folded output bias (or ``None``), and row drop masks of the inputs."""
    first, out = lin[family.mlp_in[0]], lin[family.mlp_out]
    first_zero = zero_rows(first)
    bias = first.bias if first.bias is not None else torch.zeros_like(first.weight[:, 0])
    constant = act(bias)  # (units,): what a unit with a zero first row outputs
    dead = zero_cols(out) | (first_zero & (constant == 0))
    if family.gated:
        dead |= silent_rows(lin[family.mlp_in[1]])
    folded = None
    fold = first_zero & ~dead
    if not family.gated and out.bias is not None and fold.any():
        folded = out.bias + out.weight[:, fold] @ constant[fold]
        dead |= fold
    rows = {role: zero_rows(lin[role]) for role in family.mlp_in}
    rows[family.mlp_out] = zero_rows(out)
    return (~dead).nonzero().flatten(), folded, rows


@torch.no_grad()
def layer_liveness(layer: nn.Module, lin: dict[str, nn.Linear], family: Family,
                   shape: AttentionShape) -> LayerLiveness:
    """What ``layer`` keeps; ``lin`` maps every role of ``family`` to its Linear."""
    head_dead, rows, cols = _attention(lin, shape)
    query_heads, kv_heads, padding = _keep_heads(head_dead, shape)
    neurons, folded, mlp_rows = _mlp(lin, family, layer.get_submodule(family.act))
    rows |= mlp_rows
    for role in family.roles:
        cols.setdefault(role, zero_cols(lin[role]))
    return LayerLiveness(query_heads, kv_heads, padding, neurons, folded, rows, cols)
