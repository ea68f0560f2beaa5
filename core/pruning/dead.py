"""Dead-structure propagation: weights that removals elsewhere made functionally dead.

A removal can leave weights that no longer affect the model's output: the gate and up
rows of an MLP neuron whose down column is gone, the down column of a neuron whose up
row is gone, the value rows whose output-projection columns are gone in every query
head of their group, a key row whose query rows are gone in every head of the group.
:func:`find_dead` finds them from the adapter's :class:`~llm_surgeon.model.Coupling`
declarations (see :mod:`llm_surgeon.model.couplings` for what each kind computes);
:func:`remove_dead` removes them (mask and zero) without changing any output:

* a dimension whose value is exactly 0 (an MLP neuron with an all-zero up row and no
  bias, a value row with no weights and no bias) is dead in every member;
* a dimension whose value is a known constant ``c`` (an MLP neuron whose row members
  have no weights left: ``c = prod_m act_m(b_m)``; a value row with no weights but a
  bias ``b``, which the attention weights average to ``b``) is folded into the bias of
  each reader, ``b_reader += c * W_reader[:, col]``, when every reader has a bias;
* the rows that feed only readers with no weights left are dead (generic rule);
* key and query rows are dead when their partner rows are all zero (weights and bias)
  in every head of the group; with RoPE, rows ``e`` and ``e + head_dim / 2`` together.

The rules are applied until nothing changes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import attrs
import torch
from torch import Tensor

from llm_surgeon.model.couplings import Coupling, Member
from llm_surgeon.model.state import ModuleState


@attrs.define(eq=False)
class Layout:
    """Masks, biases and weights of the modules propagation looks at (a working copy).

    Masks are copied on their first change, and which rows and columns have an alive
    weight is kept up to date as lines are removed, so the rules never rescan a mask.

    Attributes:
        masks: module -> ``(d_out, d_w)`` bool, ``True`` where alive (CPU).
        biases: module -> ``(d_out,)`` float64 bias, or ``None`` (CPU; a private copy).
        weights: module -> the module's live weight tensor (read for folds only).
    """

    masks: dict[str, Tensor]
    biases: dict[str, Tensor | None]
    weights: dict[str, Tensor]
    _own: set[str] = attrs.field(factory=set)
    _rows: dict[str, Tensor] = attrs.field(factory=dict)
    _cols: dict[str, Tensor] = attrs.field(factory=dict)

    @classmethod
    def of(cls, states: Sequence[ModuleState], masks: Mapping[str, Tensor] | None = None) -> Layout:
        """The layout of ``states``, optionally with predicted masks ``masks``.

        A row that is alive now but has no weights in its predicted mask, in a module
        that keeps some weights, is taken to be removed as a row, with its bias (as
        ``row-col`` and ``dims`` remove rows); other biases are the current ones.
        """
        masks = masks or {}
        layout = cls(masks={}, biases={}, weights={})
        for s in states:
            name, bias = s.pm.name, s.pm.module.bias
            mask = masks.get(name, s.mask).cpu()
            bias = None if bias is None else bias.detach().to("cpu", torch.float64).clone()
            layout.masks[name], layout.biases[name] = mask, bias
            layout.weights[name] = s.pm.weight
            if bias is not None and name in masks and mask is not s.mask:
                gone = s.mask.cpu().any(dim=1) & ~layout.alive_rows(name)
                if bool(layout.alive_rows(name).any()):
                    bias[gone] = 0.0
        return layout

    def alive(self) -> int:
        """Alive weights of all modules."""
        return sum(int(torch.count_nonzero(m)) for m in self.masks.values())

    def changed(self) -> set[str]:
        """Modules whose mask propagation changed."""
        return set(self._own)

    def alive_rows(self, module: str) -> Tensor:
        """``(d_out,)`` whether each row has an alive weight."""
        if module not in self._rows:
            self._rows[module] = self.masks[module].any(dim=1)
        return self._rows[module]

    def alive_cols(self, module: str) -> Tensor:
        """``(d_w,)`` whether each column has an alive weight."""
        if module not in self._cols:
            self._cols[module] = self.masks[module].any(dim=0)
        return self._cols[module]

    def _writable(self, module: str) -> Tensor:
        if module not in self._own:
            self.masks[module] = self.masks[module].clone()
            self._own.add(module)
        return self.masks[module]

    def rows_zero(self, module: str, rows: Tensor) -> Tensor:
        """Whether rows ``rows`` (any shape of indices) have no weights and no bias."""
        zero = self.weightless_rows(module, rows)
        bias = self.biases[module]
        return zero if bias is None else zero & (bias[rows] == 0)

    def weightless_rows(self, module: str, rows: Tensor) -> Tensor:
        """Whether rows ``rows`` have no alive weights (their bias may be nonzero)."""
        return ~self.alive_rows(module)[rows]

    def empty_cols(self, module: str, cols: Tensor) -> Tensor:
        """Whether columns ``cols`` have no alive weights."""
        return ~self.alive_cols(module)[cols]

    def bias_of(self, module: str, rows: Tensor) -> Tensor:
        """The bias at ``rows`` (zeros without a bias)."""
        bias = self.biases[module]
        return torch.zeros(rows.shape, dtype=torch.float64) if bias is None else bias[rows]

    def kill_rows(self, module: str, rows: Tensor) -> bool:
        """Remove rows (weights and bias); whether anything changed."""
        rows = rows.flatten()
        if not len(rows):
            return False
        live = rows[self.alive_rows(module)[rows]]
        changed = bool(len(live))
        if changed:
            self._writable(module)[live] = False
            self._rows[module][live] = False
            self._cols.pop(module, None)  # columns may have lost their last weight
        bias = self.biases[module]
        if bias is not None:
            changed |= bool((bias[rows] != 0).any())
            bias[rows] = 0.0
        return changed

    def kill_cols(self, module: str, cols: Tensor, values: Tensor | None = None) -> bool:
        """Remove columns, first folding ``values * W[:, cols]`` into the bias if given."""
        cols = cols.flatten()
        if not len(cols):
            return False
        alive = self.alive_cols(module)[cols]
        if values is not None:
            fold = alive & (values.flatten() != 0)
            if bool(fold.any()):
                idx = cols[fold]
                w = self.weights[module].detach()[:, idx.to(self.weights[module].device)]
                w = w.to("cpu", torch.float64) * self.masks[module][:, idx]
                self.biases[module] += w @ values.flatten()[fold]
        live = cols[alive]
        if not len(live):
            return False
        self._writable(module)[:, live] = False
        self._cols[module][live] = False
        self._rows.pop(module, None)
        return True


def _generic(layout: Layout, coupling: Coupling) -> bool:
    """Rows that feed only columns with no weights left are dead."""
    readers = [m for m in coupling.members if m.axis == "col"]
    if not readers:
        return False
    unread = torch.ones(coupling.size, dtype=torch.bool)
    for m in readers:
        unread &= layout.empty_cols(m.module, m.index(coupling.size)).all(dim=1)
    changed = False
    for m in coupling.members:
        if m.axis == "row":
            changed |= layout.kill_rows(m.module, m.index(coupling.size)[unread])
    return changed


def _mlp(layout: Layout, coupling: Coupling) -> bool:
    """Neurons whose value is 0, or a constant every reader can fold into its bias."""
    rows = [m for m in coupling.members if m.axis == "row"]
    cols = [m for m in coupling.members if m.axis == "col"]
    n = coupling.size * coupling.members[0].width
    zero = torch.zeros(n, dtype=torch.bool)
    constant = torch.ones(n, dtype=torch.bool)
    value = torch.ones(n, dtype=torch.float64)
    for m in rows:
        idx = m.index(coupling.size).flatten()
        weightless = layout.weightless_rows(m.module, idx)
        b = layout.bias_of(m.module, idx)
        c = b if m.activation is None else m.activation(b)
        zero |= weightless & (c == 0)
        constant &= weightless
        value *= c
    foldable = constant & ~zero
    if not cols or any(layout.biases[m.module] is None for m in cols):
        foldable = torch.zeros(n, dtype=torch.bool)  # nowhere to fold the constant
    changed = False
    for m in cols:
        idx = m.index(coupling.size).flatten()
        changed |= layout.kill_cols(m.module, idx[zero])
        changed |= layout.kill_cols(m.module, idx[foldable], value[foldable])
    for m in rows:
        changed |= layout.kill_rows(m.module, m.index(coupling.size).flatten()[zero | foldable])
    return changed


def _partner_index(member: Member, partner: Member, groups: int, n: int) -> tuple[Tensor, Tensor]:
    """Indices ``(groups, width)`` of the key/value member and ``(groups, n, width)`` of its partner."""
    own = member.index(groups)
    return own, partner.index(groups * n).reshape(groups, n, partner.width)


def _paired(zero: Tensor, rotary: bool) -> Tensor:
    """Zero positions whose RoPE partner (``e + width / 2``) is zero too (last dim: width)."""
    if not rotary:
        return zero
    half = zero.shape[-1] // 2
    both = zero[..., :half] & zero[..., half:]
    return torch.cat([both, both], dim=-1)


def _kv(layout: Layout, coupling: Coupling, couplings: Mapping[str, Coupling]) -> bool:
    """Key rows with their query partners, value rows with their output columns."""
    if coupling.implied_by is None:
        return False
    query = couplings[coupling.implied_by[0]]
    n = coupling.implied_by[1]
    changed = False
    for m in coupling.members:
        if m.partner is None:
            continue
        partner = query.member(m.partner)
        own, theirs = _partner_index(m, partner, coupling.size, n)
        if partner.axis == "row":  # keys and queries
            own_zero = _paired(layout.rows_zero(m.module, own), coupling.rotary)
            their_zero = _paired(layout.rows_zero(partner.module, theirs), coupling.rotary)
            changed |= layout.kill_rows(partner.module, theirs[own_zero[:, None, :].expand_as(theirs)])
            changed |= layout.kill_rows(m.module, own[their_zero.all(dim=1)])
        else:  # values read by the output projection
            unread = layout.empty_cols(partner.module, theirs).all(dim=1)
            changed |= layout.kill_rows(m.module, own[unread])
            weightless = layout.weightless_rows(m.module, own)
            b = layout.bias_of(m.module, own)
            if layout.biases[partner.module] is None:
                weightless &= b == 0
            dead = weightless[:, None, :].expand_as(theirs)
            values = b[:, None, :].expand_as(theirs)
            changed |= layout.kill_cols(partner.module, theirs[dead], values[dead])
            changed |= layout.kill_rows(m.module, own[weightless])
    return changed


def propagate_layout(layout: Layout, couplings: Sequence[Coupling]) -> Layout:
    """Apply the rules to ``layout`` in place until nothing changes; returns it."""
    by_name = {c.name: c for c in couplings}
    present = [c for c in couplings if all(m.module in layout.masks for m in c.members)]
    changed = True
    while changed:
        changed = False
        for c in present:
            changed |= _generic(layout, c)
            if c.kind == "mlp":
                changed |= _mlp(layout, c)
            elif c.kind == "kv-heads":
                changed |= _kv(layout, c, by_name)
    return layout


def count_dead(states: Sequence[ModuleState], couplings: Sequence[Coupling],
               masks: Mapping[str, Tensor] | None = None) -> int:
    """Alive weights (by ``masks``, default the states' masks) that propagation would free."""
    layout = Layout.of(states, masks)
    before = layout.alive()
    propagate_layout(layout, couplings)
    return before - layout.alive()


@torch.no_grad()
def remove_dead(states: Sequence[ModuleState], couplings: Sequence[Coupling]) -> int:
    """Remove every dead weight of ``states`` in place (masks, weights, folded biases).

    Returns:
        The number of alive weights freed.
    """
    if not couplings:
        return 0
    layout = propagate_layout(Layout.of(states), couplings)
    changed = layout.changed()
    freed = 0
    for s in states:
        if s.pm.name in changed:
            mask = layout.masks[s.pm.name]
            freed += s.remaining - int(torch.count_nonzero(mask))
            s.mask = mask.to(s.mask.device)
            s.apply_mask()
        bias = layout.biases[s.pm.name]
        if bias is not None:
            s.pm.module.bias.copy_(bias.to(s.pm.module.bias.dtype))
    return freed
