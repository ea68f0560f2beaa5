"""Dimensions shared by several modules: MLP neurons, attention heads, key/value heads.

An architecture adapter declares, per decoder layer, which rows and columns of which
modules are one real dimension of the model. Structures that remove real dimensions
(``dims``), dead-structure propagation and the compact-export size read these
declarations; no other code knows module names.

What a dimension computes is part of the declaration:

* ``mlp``: neuron ``i`` is ``h_i = prod_m act_m(x . W_m[i] + b_m[i])`` over the row
  members ``m`` (``act_m`` is the member's :attr:`Member.activation`, the identity when
  ``None``), read by the column members. Gated MLPs have two row members (``act(gate) * up``),
  plain ones one (``act(fc1)``).
* ``heads``: query head ``h`` (row members, e.g. ``q``) feeds only the head's attention
  output, which only the column members (``o``) read.
* ``kv-heads``: key/value head ``g`` serves the query heads ``g * n ... (g + 1) * n - 1``
  of the coupling named in :attr:`Coupling.implied_by`. Each member names its
  :attr:`Member.partner` there: a key member's partner is the query module (row ``e`` of
  key head ``g`` is multiplied with row ``e`` of each of its query heads), a value
  member's partner the output module (row ``e`` of value head ``g`` is read, through the
  attention weights, by column ``e`` of each of its query heads). With
  :attr:`Coupling.rotary`, rows ``e`` and ``e + width / 2`` of a key or query head are
  rotated together (rotate-half RoPE) and are only dead together. A key member without a
  partner is not paired (per-head query/key norms).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import attrs
import torch
from torch import Tensor

Axis = Literal["row", "col"]


@attrs.frozen
class Member:
    """One module's share of a coupled dimension.

    Candidate ``i`` owns rows (``axis="row"``: outputs) or columns (``axis="col"``:
    inputs, bias column excluded) ``offset + i * width ... offset + (i + 1) * width - 1``
    of the module's weight.

    Attributes:
        module: qualified module name.
        axis: ``row`` or ``col``.
        width: rows or columns per candidate (``head_dim`` for heads, 1 for neurons).
        offset: first row or column (a role's range inside a fused projection).
        activation: for a row member of an ``mlp`` coupling, the elementwise function
            applied to its output before the product (``None``: the identity).
        partner: for a member of a ``kv-heads`` coupling, the module of the implying
            coupling it pairs with position by position (see the module docstring).
    """

    module: str
    axis: Axis = attrs.field(validator=attrs.validators.in_(("row", "col")))
    width: int = attrs.field(default=1, validator=attrs.validators.ge(1))
    offset: int = attrs.field(default=0, validator=attrs.validators.ge(0))
    activation: Callable[[Tensor], Tensor] | None = attrs.field(default=None, eq=False, repr=False)
    partner: str | None = None

    def span(self, candidate: int) -> range:
        """Rows or columns of candidate ``candidate``."""
        start = self.offset + candidate * self.width
        return range(start, start + self.width)

    def index(self, size: int) -> Tensor:
        """Rows or columns of candidates ``0 ... size - 1``, ``(size, width)`` long."""
        return self.offset + torch.arange(size * self.width).reshape(size, self.width)


@attrs.frozen
class Coupling:
    """A dimension shared by several modules: candidate ``i`` is slice ``i`` of every member.

    Attributes:
        name: unique name, e.g. ``model.layers.3.mlp``.
        kind: ``mlp``, ``heads`` or ``kv-heads`` (adapters may add their own; only the
            generic rule of :mod:`llm_surgeon.pruning.dead` applies to those).
        layer: decoder-layer index.
        size: number of candidates (neurons, heads).
        members: the modules' shares.
        implied_by: ``(name, n)``: candidate ``i`` is dead once candidates
            ``i * n ... (i + 1) * n - 1`` of the coupling ``name`` are all removed (a
            key/value head with its group of ``n`` query heads); ``None`` otherwise.
        rotary: rows ``e`` and ``e + width / 2`` of each candidate of a key member and
            of its query partner are rotated together (RoPE).
    """

    name: str
    kind: str
    layer: int
    size: int = attrs.field(validator=attrs.validators.ge(1))
    members: tuple[Member, ...]
    implied_by: tuple[str, int] | None = None
    rotary: bool = False

    def member(self, module: str) -> Member:
        """The member of module ``module``."""
        for m in self.members:
            if m.module == module:
                return m
        raise KeyError(f"{module} is not a member of coupling {self.name}")


def attention_couplings(
    prefix: str,
    layer: int,
    modules: tuple[str, str, str, str],
    heads: int,
    kv_heads: int,
    head_dim: int,
    *,
    rotary: bool,
    head_norm: bool = False,
) -> list[Coupling]:
    """The ``heads`` and ``kv-heads`` couplings of one (grouped-query) attention block.

    Args:
        prefix: name of the attention block (``model.layers.3.self_attn``).
        layer: decoder-layer index.
        modules: qualified names of the ``(q, k, v, o)`` projections.
        heads, kv_heads: query and key/value heads (``heads % kv_heads == 0``).
        head_dim: rows of ``q``/``k``/``v`` (columns of ``o``) per head.
        rotary: keys and queries are rotated with rotate-half RoPE.
        head_norm: queries and keys are normalised over each head (Gemma 3's and Qwen 3's
            ``q_norm``/``k_norm``): every row of a head then changes the others, so key
            rows are not paired with query rows (the key member gets no partner).
    """
    if heads % kv_heads:
        raise ValueError(f"{prefix}: {heads} query heads do not split into {kv_heads} key/value groups")
    q, k, v, o = modules
    query = Coupling(f"{prefix}.heads", "heads", layer, heads,
                     (Member(q, "row", head_dim), Member(o, "col", head_dim)))
    kv = Coupling(f"{prefix}.kv_heads", "kv-heads", layer, kv_heads,
                  (Member(k, "row", head_dim, partner=None if head_norm else q), Member(v, "row", head_dim, partner=o)),
                  implied_by=(query.name, heads // kv_heads), rotary=rotary)
    return [query, kv]
