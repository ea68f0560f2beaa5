"""Dimensions shared by several modules: MLP neurons, attention heads, key/value heads.

An architecture adapter declares, per decoder layer, which rows and columns of which
modules are one real dimension of the model. Structures that remove real dimensions
(``dims``), dead-structure propagation and compact export read these declarations;
no other code knows module names.
"""

from __future__ import annotations

from typing import Literal

import attrs

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
    """

    module: str
    axis: Axis = attrs.field(validator=attrs.validators.in_(("row", "col")))
    width: int = attrs.field(default=1, validator=attrs.validators.ge(1))
    offset: int = attrs.field(default=0, validator=attrs.validators.ge(0))

    def span(self, candidate: int) -> range:
        """Rows or columns of candidate ``candidate``."""
        start = self.offset + candidate * self.width
        return range(start, start + self.width)


@attrs.frozen
class Coupling:
    """A dimension shared by several modules: candidate ``i`` is slice ``i`` of every member.

    Attributes:
        name: unique name, e.g. ``model.layers.3.mlp``.
        kind: ``mlp``, ``heads`` or ``kv-heads`` (adapters may add their own).
        layer: decoder-layer index.
        size: number of candidates (neurons, heads).
        members: the modules' shares.
        implied_by: ``(name, n)``: candidate ``i`` is dead once candidates
            ``i * n ... (i + 1) * n - 1`` of the coupling ``name`` are all removed (a
            key/value head with its group of ``n`` query heads); ``None`` otherwise.
    """

    name: str
    kind: str
    layer: int
    size: int = attrs.field(validator=attrs.validators.ge(1))
    members: tuple[Member, ...]
    implied_by: tuple[str, int] | None = None
