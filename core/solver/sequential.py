"""Sequential element removal for ``F = G ⊗ A``: chunks of whole rows in order, earlier rows fixed.

Chunks are solved in row order like :mod:`llm_surgeon.solver.elements`, but each chunk
may change only its own rows and the rows after it: rows of earlier chunks are final.
Each step is then the exact constrained optimum over the weights it may change (as in
OBS/OBC and SparseGPT, which fix earlier columns), no removed weight is ever moved off
zero again, and the predicted costs of the steps add up to the true one. The single
sweep of :mod:`~llm_surgeon.solver.elements` instead lets later chunks move every
row, earlier removals included, and zeroes those again at the end, which costs more
the more ``G`` couples the rows.

With ``U`` upper triangular and ``G^-1 = U^T U`` (:meth:`DampedFactor.inverse_cholesky_upper`),
the inverse of the trailing block ``G[r:, r:]`` is ``U[r:, r:]^T U[r:, r:]``. For a chunk
with rows ``r_1..r_m`` (``U_c = U[r_1:r_m+1, r_1:r_m+1]``), weights ``(r_a, j_a)``::

    E_c F_tail^-1 E_c^T = (U_c^T U_c)[r, r] ∘ A^-1[j, j]
    alpha = (E_c F_tail^-1 E_c^T)^-1 theta_c
    Z = U_c X_c                  (X_c: rows of alpha_a A^-1[j_a, :] summed per row)
    dTheta[r_1:] = -U[r_1:r_m+1, r_1:]^T Z

Updates reach the rows of a block of :data:`~llm_surgeon.solver.elements.BLOCK_ROWS`
rows at once and the rows after it when the block ends (one product).

The steps' costs add up: a later step changes only weights that were free in every
earlier step, where the earlier steps left a zero gradient, so the true cost
``1/2 dtheta^T F dtheta`` is the sum of the chunks' ``1/2 theta_c^T alpha``, with no
product by ``F`` (except for rows split beyond ``MAX_JOINT``, whose pieces move each other).
"""

from __future__ import annotations

import torch
from torch import Tensor

from llm_surgeon.solver.base import MAX_JOINT, ChunkSize, plan_chunks
from llm_surgeon.solver.elements import BLOCK_ROWS, check_joint, solve_chunk
from llm_surgeon.util.torch_util import torch_threads


def remove_elements_sequential(
    theta: Tensor, removed: Tensor, u_g: Tensor, a_inv: Tensor, chunk_size: ChunkSize
) -> tuple[Tensor, float | None]:
    """Remove elements of ``theta`` under ``F = G ⊗ A`` chunk by chunk, earlier rows fixed.

    Args:
        theta: ``(d_out, d_in)`` float64.
        removed: ``(d_out, d_in)`` bool.
        u_g: ``U`` with ``G^-1 = U^T U``, upper triangular ``(d_out, d_out)``.
        a_inv: ``A^-1``, ``(d_in, d_in)``, row-major.
        chunk_size: whole rows are packed up to this many weights (``None``: one chunk,
            the joint removal); a larger row is a chunk of its own, split into pieces of
            :data:`~llm_surgeon.solver.base.MAX_JOINT` only beyond that.

    Returns:
        ``(d_out, d_in)``, exactly zero where ``removed``, and the increase of the
        quadratic model (``None`` when a row had to be split: compute it from the change).
    """
    flat, bounds = plan_chunks(removed, chunk_size, whole_rows=MAX_JOINT)
    new = theta.clone()
    if len(flat) == 0:
        return new, 0.0
    d_in = theta.shape[1]
    rows_all, cols_all = flat // d_in, flat % d_in
    check_joint(max(b - a for a, b in zip(bounds[:-1], bounds[1:], strict=True)), chunk_size)
    # A chunk owns the rows from the end of the previous one to its last row: rows without
    # removals before it may still move (with one chunk, this is the joint removal).
    # (The pieces of a row split beyond MAX_JOINT all own that row.)
    last = rows_all[torch.tensor(bounds[1:], device=flat.device) - 1].tolist()
    own = rows_all[torch.tensor(bounds[:-1], device=flat.device)].tolist()
    first = [0] + [min(r + 1, o) for r, o in zip(last[:-1], own[1:], strict=True)]
    split = any(o <= r for r, o in zip(last[:-1], own[1:], strict=True))
    i, n_chunks, cost = 0, len(bounds) - 1, 0.0
    with torch_threads(1):  # small operations: see torch_threads
        while i < n_chunks:
            j = i  # the block: chunks i..j, rows s..e-1
            while j + 1 < n_chunks and last[j + 1] - first[i] < BLOCK_ROWS:
                j += 1
            s, e = first[i], last[j] + 1
            z_block = torch.zeros(e - s, d_in, dtype=theta.dtype, device=theta.device)
            for c in range(i, j + 1):
                lo, hi = bounds[c], bounds[c + 1]
                r1, rm = first[c], last[c] + 1
                z, step = _solve_chunk(new, rows_all[lo:hi], cols_all[lo:hi], u_g[r1:rm, r1:rm], r1, a_inv)
                cost += step
                new[r1:e] -= u_g[r1:rm, r1:e].T @ z
                new.view(-1)[flat[lo:hi]] = 0.0
                z_block[r1 - s : rm - s] += z
            if e < theta.shape[0]:
                new[e:] -= u_g[s:e, e:].T @ z_block
            i = j + 1
    new[removed] = 0.0  # rows split beyond MAX_JOINT may have moved their earlier pieces
    return new, None if split else cost


def _solve_chunk(new: Tensor, rows: Tensor, cols: Tensor, u_c: Tensor, r1: int,
                 a_inv: Tensor) -> tuple[Tensor, float]:
    """``Z = U_c X_c`` of one chunk owning rows ``r1..r1 + len(u_c) - 1``, ``(len(u_c), d_in)``,
    and the step's cost ``1/2 theta_c^T alpha``."""
    current = new[rows, cols]
    a_rows = a_inv.index_select(0, cols)  # A^-1[j, :], (k, d_in)
    a_block = a_rows.gather(1, cols.expand(len(cols), -1))  # A^-1[j, j]; a gather is 3x faster than a_rows[:, cols]
    if len(u_c) == 1:
        scale = u_c[0, 0]
        alpha = solve_chunk(a_block.mul_(scale * scale), current)
        return (scale * alpha).unsqueeze(0) @ a_rows, 0.5 * float(current @ alpha)
    local = rows - r1
    u_cols = u_c[:, local]  # (rows of the chunk, k)
    alpha = solve_chunk(a_block.mul_(u_cols.T @ u_cols), current)
    x = torch.zeros(len(u_c), a_inv.shape[0], dtype=new.dtype, device=new.device)
    x.index_add_(0, local, alpha[:, None] * a_rows)
    return u_c @ x, 0.5 * float(current @ alpha)
