"""The solver interface: removal costs and optimal updates under a quadratic loss model.

For weights ``theta = [W | b]`` of shape ``(d_out, d_in)`` (row-major ``vec``) and a
curvature ``F``, removing the set ``K`` of weights (``E_K`` selects them) costs, to
second order, and is best compensated by (Optimal Brain Surgeon, generalised to sets)::

    L_K = 1/2 (E_K theta)^T (E_K F^-1 E_K^T)^-1 (E_K theta)
    dtheta = -F^-1 E_K^T (E_K F^-1 E_K^T)^-1 E_K theta

after which the removed weights are exactly zero. Every solver computes in float64
and returns float64 tensors on the device of the ``theta`` it was given.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Literal

import torch
from torch import Tensor

from llm_surgeon.errors import ConfigError

#: ``None``: all removed weights at once; an int: at most that many per chunk (whole
#: rows where possible); ``"row"``: one row per chunk.
ChunkSize = int | Literal["row"] | None

#: Default chunk size of correlated element updates. Measured on SmolLM2-135M shapes
#: with 10% of the weights removed (float64, one CPU thread, seconds for the update plus
#: the factorisations): 1536x576 0.43 + 0.17, 576x1536 0.32 + 0.16, 576x576 0.12 + 0.02,
#: 192x576 0.04 + 0.01. Smaller chunks split rows (576x1536 has ~154 removed weights
#: per row; 128 loses 9% more), larger ones cost O(chunk^2) per weight (512: ~2x time).
DEFAULT_CHUNK_SIZE: ChunkSize = 256

#: Above this many weights removed in one chunk, ``E_K F^-1 E_K^T`` is not formed.
MAX_JOINT = 8192

#: How chunks of removed weights are swept: ``"sequential"``, chunks of whole rows in
#: row order, each changing only its own and later rows (earlier rows are final, every
#: step is exact); ``"gauss-seidel"``, every chunk updates every row, and weights removed
#: by earlier chunks are zeroed again at the end. ``None``: the solver's default
#: (sequential where it has it).
Sweep = Literal["sequential", "gauss-seidel"] | None
SWEEPS = ("sequential", "gauss-seidel")


class UnsupportedCurvatureError(ConfigError):
    """The solver has no method for this curvature structure at this size."""


class CurvatureSolver(ABC):
    """Costs and updates for removing weights of one layer under curvature ``F``.

    Attributes:
        d_out: rows of ``theta``.
        d_in: columns of ``theta`` (the bias column included when there is one).
        on_escalation: set by the caller to learn how often a factorisation had to
            escalate its damping (called once per factorisation that did).
    """

    d_out: int
    d_in: int
    on_escalation: Callable[[int], None] | None = None

    def report_escalations(self, count: int) -> None:
        """Tell :attr:`on_escalation` that a factorisation escalated ``count`` times."""
        if count and self.on_escalation is not None:
            self.on_escalation(count)

    # -- costs -----------------------------------------------------------------
    @abstractmethod
    def element_costs(self, theta: Tensor) -> Tensor:
        """Cost of removing each weight alone: ``theta^2 / (2 [F^-1]_ii)``.

        Args:
            theta: ``(d_out, d_in)``.

        Returns:
            ``(d_out, d_in)`` float64.
        """

    @abstractmethod
    def row_costs(self, theta: Tensor) -> Tensor:
        """Cost of removing each whole row (its bias included) alone, ``(d_out,)``."""

    @abstractmethod
    def col_costs(self, theta: Tensor) -> Tensor:
        """Cost of removing each whole column alone, ``(d_in,)``."""

    def row_set_costs(self, theta: Tensor, sets: Sequence[Tensor]) -> Tensor:
        """Cost of removing each set of rows (biases included) jointly, each set alone.

        ``L_R = 1/2 (E_R theta)^T (E_R F^-1 E_R^T)^-1 E_R theta`` with ``R`` all weights of
        the rows. The default reads it off the optimal removal of each set (exact for
        every solver); solvers with a closed form override it.

        Args:
            theta: ``(d_out, d_in)``.
            sets: row indices of each set (any sizes, empty allowed).

        Returns:
            ``(len(sets),)`` float64 on the CPU.
        """
        none = torch.zeros(self.d_in, dtype=torch.bool)
        return torch.tensor([self.remove_rows_cols(theta, s, none)[1] if len(s) else 0.0 for s in sets],
                            dtype=torch.float64)

    def col_set_costs(self, theta: Tensor, sets: Sequence[Tensor]) -> Tensor:
        """Cost of removing each set of columns jointly, each set alone (see :meth:`row_set_costs`)."""
        none = torch.zeros(self.d_out, dtype=torch.bool)
        return torch.tensor([self.remove_rows_cols(theta, none, s)[1] if len(s) else 0.0 for s in sets],
                            dtype=torch.float64)

    @abstractmethod
    def quadratic(self, delta: Tensor) -> float:
        """The quadratic model ``1/2 vec(delta)^T F vec(delta)`` of a change ``(d_out, d_in)``."""

    # -- removal ---------------------------------------------------------------
    @abstractmethod
    def remove(self, theta: Tensor, removed: Tensor) -> tuple[Tensor, float]:
        """Remove an arbitrary set of weights with the optimal update (exact where possible).

        Args:
            theta: ``(d_out, d_in)``.
            removed: ``(d_out, d_in)`` bool, the set ``K``.

        Returns:
            The updated ``theta`` (exactly zero on ``K``) and the cost ``L_K``.
        """

    def remove_rows_cols(
        self, theta: Tensor, rows: Tensor, cols: Tensor, update: bool = True
    ) -> tuple[Tensor, float]:
        """Remove whole rows and columns.

        Args:
            theta: ``(d_out, d_in)``.
            rows: ``(d_out,)`` bool (or indices) of rows to remove.
            cols: ``(d_in,)`` bool (or indices) of columns to remove.
            update: apply the optimal update to the remaining weights; otherwise only
                zero the removed ones.

        Returns:
            The new ``theta`` and the increase of the quadratic model.
        """
        rows = as_mask(rows, self.d_out, "rows")
        cols = as_mask(cols, self.d_in, "cols")
        removed = rows[:, None] | cols[None, :]
        if not update:
            return self.zero(theta, removed)
        return self.remove(theta, removed)

    def remove_elements(
        self,
        theta: Tensor,
        removed: Tensor,
        *,
        chunk_size: ChunkSize = DEFAULT_CHUNK_SIZE,
        update: bool = True,
        sweep: Sweep = None,
    ) -> tuple[Tensor, float]:
        """Remove individual weights, updating the rest chunk by chunk.

        Chunks (see :func:`plan_chunks`) are solved in row order; each sees the updates
        of the chunks before it, and weights removed earlier stay zero. With one chunk
        this is the exact joint removal; with several it is a cheaper approximation
        whose true quadratic cost (the one returned) is at least the joint cost.

        Args:
            theta: ``(d_out, d_in)``.
            removed: ``(d_out, d_in)`` bool.
            chunk_size: see :data:`ChunkSize`.
            update: ``False`` only zeroes the removed weights.
            sweep: see :data:`Sweep`.

        Returns:
            The new ``theta`` (exactly zero where removed) and the increase of the
            quadratic model ``1/2 dtheta^T F dtheta`` of the returned change.
        """
        if not update:
            return self.zero(theta, removed)
        return self.remove(theta, removed)

    def zero(self, theta: Tensor, removed: Tensor) -> tuple[Tensor, float]:
        """Zero the removed weights without updating the others.

        Returns:
            The new ``theta`` and the quadratic model of the change.
        """
        theta = self._theta(theta)
        removed = self._mask(removed, theta.device)
        delta = torch.where(removed, -theta, torch.zeros_like(theta))
        return theta + delta, self.quadratic(delta) if bool(removed.any()) else 0.0

    # -- helpers -----------------------------------------------------------------
    def _theta(self, theta: Tensor) -> Tensor:
        if tuple(theta.shape) != (self.d_out, self.d_in):
            raise ValueError(f"theta has shape {tuple(theta.shape)}, expected {(self.d_out, self.d_in)}")
        return theta.detach().to(torch.float64)

    def _mask(self, removed: Tensor, device: torch.device) -> Tensor:
        if tuple(removed.shape) != (self.d_out, self.d_in):
            raise ValueError(f"removed has shape {tuple(removed.shape)}, expected {(self.d_out, self.d_in)}")
        return removed.to(device=device, dtype=torch.bool)


def check_sweep(sweep: Sweep) -> None:
    """Raise ``ValueError`` for an unknown sweep."""
    if sweep is not None and sweep not in SWEEPS:
        raise ValueError(f"sweep must be one of {', '.join(SWEEPS)} or None, got {sweep!r}")


def as_mask(selection: Tensor, n: int, what: str) -> Tensor:
    """A bool mask ``(n,)`` from a bool mask or a tensor of indices."""
    if selection.dtype == torch.bool:
        if selection.shape != (n,):
            raise ValueError(f"{what} mask has shape {tuple(selection.shape)}, expected ({n},)")
        return selection
    mask = torch.zeros(n, dtype=torch.bool, device=selection.device)
    mask[selection.long()] = True
    return mask


def by_size(sets: Sequence[Tensor]) -> dict[int, list[int]]:
    """Positions of the non-empty index sets, grouped by set size (for batched solves)."""
    groups: dict[int, list[int]] = {}
    for i, s in enumerate(sets):
        if len(s):
            groups.setdefault(len(s), []).append(i)
    return groups


def plan_chunks(removed: Tensor, chunk_size: ChunkSize, *, whole_rows: int = 0) -> tuple[Tensor, list[int]]:
    """Split the removed weights into chunks of whole rows where possible.

    Args:
        removed: ``(d_out, d_in)`` bool.
        chunk_size: ``None`` (one chunk), ``"row"`` (one per row) or a positive int:
            consecutive rows are packed while they fit; a row with more removed
            weights than ``chunk_size`` is split into pieces of ``chunk_size``.
        whole_rows: rows with at most this many removed weights are never split (a
            larger row becomes a chunk of its own); larger rows are split into pieces
            of this size.

    Returns:
        The row-major flat indices of the removed weights ``(k,)`` and the chunk
        boundaries ``[0, b_1, ..., k]`` into them.
    """
    flat = removed.flatten().nonzero().flatten()
    k = len(flat)
    if k == 0:
        return flat, [0]
    if chunk_size is None:
        return flat, [0, k]
    counts = removed.sum(dim=1).tolist()
    bounds = [0]
    if chunk_size == "row":
        for c in counts:
            if c:
                bounds.append(bounds[-1] + c)
        return flat, bounds
    if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
        raise ValueError(f"chunk_size must be None, 'row' or a positive int, got {chunk_size!r}")
    if whole_rows > chunk_size:
        return flat, _pack_whole_rows(counts, chunk_size, whole_rows)
    pos, start = 0, 0  # start of the open chunk
    for c in counts:
        if not c:
            continue
        if pos + c - start > chunk_size and pos > start:
            bounds.append(pos)  # close the open chunk before this row
            start = pos
        while pos + c - start > chunk_size:  # a row larger than a chunk: split it
            take = chunk_size - (pos - start)
            pos, c = pos + take, c - take
            bounds.append(pos)
            start = pos
        pos += c
    if bounds[-1] != k:
        bounds.append(k)
    return flat, bounds


def _pack_whole_rows(counts: list[int], chunk_size: int, whole_rows: int) -> list[int]:
    """Chunk boundaries packing whole rows up to ``chunk_size`` (see :func:`plan_chunks`)."""
    bounds, pos = [0], 0
    for c in counts:
        if not c:
            continue
        if pos > bounds[-1] and pos + c - bounds[-1] > chunk_size:
            bounds.append(pos)  # close the open chunk before this row
        if c > chunk_size:  # a chunk of its own, split only beyond whole_rows
            pos += c
            bounds.extend(range(bounds[-1] + whole_rows, pos, whole_rows))
            bounds.append(pos)
            continue
        pos += c
    if bounds[-1] != pos:
        bounds.append(pos)
    return bounds
