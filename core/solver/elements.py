"""Correlated element removal for a single Kronecker product ``F = G ⊗ A``, chunk by chunk.

For a chunk ``c`` of removed weights at positions ``(r_a, j_a)``::

    E_c F^-1 E_c^T = G^-1[r, r] ∘ A^-1[j, j]          (k x k, a Hadamard of gathered blocks)
    alpha = (E_c F^-1 E_c^T)^-1 theta_c
    dTheta = -G^-1[:, R_c] @ (X_c @ A^-1)           (X_c: alpha scattered into the chunk's rows R_c)

so no ``(n m)^2`` matrix is ever formed. Chunks are processed in row order, and each
sees the updates of the chunks before it (one forward block Gauss-Seidel sweep on the
joint system; exact with a single chunk). Those updates are applied lazily, like
SparseGPT's lazy batches: the rows of a block are brought up to date when the block
starts, and within the block only their accumulated change is tracked. A chunk only
gathers ``k x k`` blocks of ``G^-1`` and ``A^-1`` for its system. The full update
``-G^-1 X A^-1``, with ``X`` all multipliers scattered, is two matrix products at the
end, after which every removed weight is set exactly to zero (a weight removed by an
earlier chunk is never read again, so zeroing it only at the end is the same as
keeping it zero throughout).
"""

from __future__ import annotations

import torch
from torch import Tensor

from llm_surgeon.errors import ConfigError
from llm_surgeon.solver.base import MAX_JOINT, ChunkSize, plan_chunks
from llm_surgeon.solver.factor import damped_cholesky

#: Rows of ``theta`` kept up to date together while their chunks are solved.
BLOCK_ROWS = 32


def solve_spd(matrix: Tensor, rhs: Tensor, what: str = "E_K F^-1 E_K^T") -> Tensor:
    """Solve ``matrix @ x = rhs`` for an SPD ``matrix`` by Cholesky.

    A system that is positive definite only up to rounding gets a jitter of
    ``1e-12``, ``1e-10``, then ``1e-8`` times its mean diagonal.

    Args:
        matrix: ``(k, k)`` symmetric positive definite.
        rhs: ``(k,)``.
        what: name used in the error message.
    """
    chol, info = torch.linalg.cholesky_ex(matrix)
    if int(info):  # the checks and jitter of damped_cholesky only when needed
        chol = damped_cholesky(matrix, 0.0, escalation=100.0, max_escalations=3, zero_start=1e-12,
                               name=what, warn=False).cholesky
    return torch.cholesky_solve(rhs.unsqueeze(-1), chol).squeeze(-1)


#: Smallest chunk system solved with a float32 factorisation and float64 refinement.
#: Below it the refinement steps cost more than the cheaper factorisation saves (one
#: thread, systems of condition 1e3, ms per solve, float64 / mixed: k = 192 0.36 / 0.49,
#: 288 0.59 / 0.68, 400 1.63 / 1.15, 576 4.8 / 2.7).
MIXED_MIN = 320
#: Refinement steps before a mixed-precision solve falls back to float64.
MIXED_STEPS = 8
#: Refinement stops at a residual of ``MIXED_TOL * max(diag) * ||x||_1``, a bound on
#: ``|matrix| |x|``: a backward error some hundred times float64's own rounding.
MIXED_TOL = 1e-13


def solve_spd_mixed(matrix: Tensor, rhs: Tensor, what: str = "E_K F^-1 E_K^T") -> Tensor:
    """Solve ``matrix @ x = rhs`` (float64 SPD) to float64 accuracy with a float32 Cholesky.

    The float32 factorisation costs about half of a float64 one; iterative refinement
    (residuals in float64, corrections from the float32 factor) then recovers float64
    accuracy in a few ``k^2`` steps whenever ``cond(matrix)`` is well below ``1e7``.
    Otherwise (the float32 factorisation fails, or refinement stalls) it falls back to
    :func:`solve_spd`.
    """
    chol, info = torch.linalg.cholesky_ex(matrix.to(torch.float32))
    if int(info) == 0:
        x = torch.cholesky_solve(rhs.to(torch.float32).unsqueeze(-1), chol).squeeze(-1).to(matrix.dtype)
        max_diag = float(matrix.diagonal().max())
        for _ in range(MIXED_STEPS):
            residual = rhs - matrix @ x
            if float(residual.abs().max()) <= MIXED_TOL * max_diag * float(x.abs().sum()):
                return x
            x += torch.cholesky_solve(residual.to(torch.float32).unsqueeze(-1), chol).squeeze(-1).to(matrix.dtype)
    return solve_spd(matrix, rhs, what)


def solve_chunk(matrix: Tensor, rhs: Tensor) -> Tensor:
    """Solve one chunk's ``E_c F^-1 E_c^T`` system: mixed precision from ``MIXED_MIN`` up."""
    if len(matrix) >= MIXED_MIN:
        return solve_spd_mixed(matrix, rhs)
    return solve_spd(matrix, rhs)


def check_joint(k: int, chunk_size: ChunkSize) -> None:
    """Refuse to form a ``k x k`` system for a single chunk that is too large."""
    if k > MAX_JOINT:
        raise ConfigError(
            f"removing {k} weights in one chunk (chunk_size={chunk_size!r}) would form a "
            f"{k}x{k} matrix; use a chunk size of at most {MAX_JOINT} (e.g. 'row' or 256)"
        )


def remove_elements_rank1(
    theta: Tensor, removed: Tensor, g_inv: Tensor, a_inv: Tensor, chunk_size: ChunkSize
) -> Tensor:
    """Remove elements of ``theta`` under ``F = G ⊗ A``; returns the new ``theta``.

    Args:
        theta: ``(d_out, d_in)`` float64.
        removed: ``(d_out, d_in)`` bool.
        g_inv: ``G^-1``, ``(d_out, d_out)``.
        a_inv: ``A^-1``, ``(d_in, d_in)``.
        chunk_size: see :data:`~llm_surgeon.solver.base.ChunkSize`.

    Returns:
        ``(d_out, d_in)``, exactly zero where ``removed``.

    One function on purpose: this is the hot loop of element and N:M pruning, and its
    lazily updated block state (``change``, ``done``) is shared by every chunk of a block.
    """
    d_out, d_in = theta.shape
    flat, bounds = plan_chunks(removed, chunk_size)
    if len(flat) == 0:
        return theta.clone()
    rows_all = flat // d_in
    cols_all = flat % d_in
    n_chunks = len(bounds) - 1
    check_joint(max(b - a for a, b in zip(bounds[:-1], bounds[1:], strict=True)), chunk_size)
    first_row = rows_all[torch.tensor(bounds[:-1], device=flat.device)].tolist()
    last_row = rows_all[torch.tensor(bounds[1:], device=flat.device) - 1].tolist()

    values = theta.view(-1)[flat]
    x_all = torch.zeros_like(theta)  # the multipliers alpha of every chunk, scattered
    x_flat = x_all.view(-1)
    done = 0  # rows below `done` may have nonzero multipliers
    i = 0
    while i < n_chunks:
        s = first_row[i]
        j = i
        while j + 1 < n_chunks and last_row[j + 1] - s < BLOCK_ROWS:
            j += 1
        e = last_row[j] + 1
        g_block = g_inv[s:e]  # (B, d_out)
        # change[r] is minus the update of row s + r so far: (G^-1 X A^-1)[s + r].
        change = (g_block[:, :done] @ x_all[:done]) @ a_inv if done else torch.zeros_like(theta[s:e])
        for c in range(i, j + 1):
            lo, hi = bounds[c], bounds[c + 1]
            rows, cols = rows_all[lo:hi], cols_all[lo:hi]
            current = values[lo:hi] - change[rows - s, cols]
            a_rows = a_inv.index_select(0, cols)  # A^-1[j, :], (k, d_in), read once
            a_block = a_rows.gather(1, cols.expand(len(cols), -1))  # A^-1[j, j], (k, k): 3x faster than a_rows[:, cols]
            if first_row[c] == last_row[c]:
                r = first_row[c]
                alpha = solve_chunk(a_block.mul_(g_inv[r, r]), current)
                x_flat[flat[lo:hi]] = alpha
                if c < j:  # later chunks of this block read `change`
                    change.addr_(g_block[:, r], alpha @ a_rows)
            else:
                local = rows - first_row[c]  # the chunk's rows lie in first_row..last_row
                n_rows = last_row[c] - first_row[c] + 1
                g_small = g_inv[first_row[c] : last_row[c] + 1, first_row[c] : last_row[c] + 1]
                system = a_block.mul_(g_small[local[:, None], local[None, :]])
                alpha = solve_chunk(system, current)
                x_flat[flat[lo:hi]] = alpha
                if c < j:
                    # Row i of the chunk's spread is the sum of alpha_a A^-1[j_a, :] over its weights.
                    spread = torch.zeros(n_rows, d_in, dtype=theta.dtype, device=theta.device)
                    spread.index_add_(0, local, alpha[:, None] * a_rows)
                    change.addmm_(g_block[:, first_row[c] : last_row[c] + 1], spread)
        done = max(done, e)
        i = j + 1
    new = theta - (g_inv @ x_all) @ a_inv
    new[removed] = 0.0
    return new
