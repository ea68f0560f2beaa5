"""The real size of a pruned model: the parameters a compact export would store.

Zeroed weights only make a model smaller when they can be dropped from its storage.
:func:`real_parameters` counts the prunable weights of a compact export under two rules:

1. *Whole dimensions.* A coupled candidate (an MLP neuron, a query head, a key/value
   head; :class:`~llm_surgeon.model.Coupling`) whose weights are all removed in every
   member is dropped from every member: the layer gets a smaller width or fewer heads,
   with no extra storage. A Linear of shape ``(d_out, d_w)`` shrinks to ``(R', C')``.
2. *Scattered rows and columns.* Within ``(R', C')``, the Linear may instead be stored
   as its live sub-matrix (the ``r`` rows and ``c`` columns with an alive weight) plus
   the index vectors that scatter its outputs and gather its inputs (one parameter per
   index, only on a side that is restricted): ``r c + r [r < R'] + c [c < C']``. The
   cheaper of the two counts.

Biases are not prunable weights and are not counted. Scattered single weights
(``element``, N:M) do not reduce the real size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from llm_surgeon.model.couplings import Coupling


def removed_lines(masks: Mapping[str, torch.Tensor], couplings: Sequence[Coupling]
                  ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Rows and columns of each module dropped with whole dimensions (rule 1).

    Args:
        masks: module -> ``(d_out, d_w)`` bool, ``True`` where alive (CPU).
        couplings: the adapter's couplings.

    Returns:
        module -> ``(rows (d_out,), cols (d_w,))`` bool.
    """
    lines = {name: (torch.zeros(m.shape[0], dtype=torch.bool), torch.zeros(m.shape[1], dtype=torch.bool))
             for name, m in masks.items()}
    for c in couplings:
        if not all(m.module in masks for m in c.members):
            continue
        gone = torch.ones(c.size, dtype=torch.bool)
        for m in c.members:
            alive = masks[m.module].any(dim=1 if m.axis == "row" else 0)
            gone &= ~alive[m.index(c.size)].any(dim=1)
        for m in c.members:
            lines[m.module][0 if m.axis == "row" else 1][m.index(c.size)[gone].flatten()] = True
    return lines


def module_parameters(mask: torch.Tensor, rows_gone: torch.Tensor, cols_gone: torch.Tensor) -> int:
    """Stored weights of one Linear after rule 1 (``rows_gone``/``cols_gone``) and rule 2."""
    kept_rows = int((~rows_gone).sum())
    kept_cols = int((~cols_gone).sum())
    r = int(mask.any(dim=1).sum())
    c = int(mask.any(dim=0).sum())
    indexed = r * c + (r if r < kept_rows else 0) + (c if c < kept_cols else 0)
    return min(kept_rows * kept_cols, indexed)


def real_parameters(masks: Mapping[str, torch.Tensor], couplings: Sequence[Coupling]) -> int:
    """Prunable weights a compact export of the modules would store (module docstring).

    Args:
        masks: module -> ``(d_out, d_w)`` bool, ``True`` where alive (CPU).
        couplings: the adapter's couplings.
    """
    lines = removed_lines(masks, couplings)
    return sum(module_parameters(mask, *lines[name]) for name, mask in masks.items())
