"""The collectives of one pruning job, over ``torch.distributed`` or within a single process.

Every step that needs the other ranks goes through a :class:`Communicator`: sums over
calibration tokens (:meth:`Communicator.all_reduce_`, optionally only the upper triangle
of a symmetric matrix), small reductions of the global threshold (:meth:`~Communicator.sum`,
:meth:`~Communicator.max`), results an owner rank computed (:meth:`~Communicator.broadcast_`)
and small Python objects (:meth:`~Communicator.gather_objects`). With one process every
collective returns its input unchanged, so single-process and distributed runs share
one code path. The bytes each rank contributes are counted per kind in :class:`Traffic`.
"""

from __future__ import annotations

import contextlib
import pickle
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

from llm_surgeon.dist.assign import assign_owners

if TYPE_CHECKING:
    from torch import Tensor

T = TypeVar("T")

#: Elements per message when a symmetric matrix is reduced by blocks of rows.
BLOCK_ELEMENTS = 1 << 24


@attrs.define
class Traffic:
    """Bytes each rank contributed to collectives, and the number of calls, per kind.

    Kinds: ``statistics`` (token sums), ``threshold`` (the global threshold's reductions),
    ``weights`` (updated weights and masks from their owners), ``evaluation``, ``other``.
    For an all-reduce the count is the payload (a ring all-reduce moves about twice that
    over the network per rank); for a broadcast the tensor's size.
    """

    bytes: dict[str, int] = attrs.field(factory=dict)
    calls: dict[str, int] = attrs.field(factory=dict)

    def add(self, kind: str, nbytes: int) -> None:
        """Count one collective of ``nbytes`` under ``kind``."""
        self.bytes[kind] = self.bytes.get(kind, 0) + int(nbytes)
        self.calls[kind] = self.calls.get(kind, 0) + 1

    def snapshot(self) -> Traffic:
        """A copy of the counters so far."""
        return Traffic(dict(self.bytes), dict(self.calls))

    def since(self, before: Traffic) -> dict[str, Any]:
        """MiB and calls per kind since ``before``, with the total MiB."""
        kinds = sorted(set(self.bytes) | set(before.bytes))
        mib = {k: (self.bytes.get(k, 0) - before.bytes.get(k, 0)) / 2**20 for k in kinds}
        calls = {k: self.calls.get(k, 0) - before.calls.get(k, 0) for k in kinds}
        return {"mb": mib, "calls": calls, "total_mb": sum(mib.values())}


class Communicator:
    """Collectives of one job of ``size`` processes; this process is ``rank``.

    Args:
        rank: this process's rank.
        size: number of processes (1: every collective is the identity).
        backend: the ``torch.distributed`` backend in use (``None`` for one process).
    """

    def __init__(self, rank: int = 0, size: int = 1, backend: str | None = None) -> None:
        if not 0 <= rank < size:
            raise ValueError(f"rank {rank} is not in [0, {size})")
        self.rank = rank
        self.size = size
        self.backend = backend
        self.traffic = Traffic()

    @property
    def distributed(self) -> bool:
        """Whether there is more than one process."""
        return self.size > 1

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0 (the one that writes outputs and shows progress)."""
        return self.rank == 0

    def __repr__(self) -> str:
        return f"Communicator(rank={self.rank}, size={self.size}, backend={self.backend!r})"

    # -- work split ------------------------------------------------------------------------
    def shard(self, x: Tensor) -> Tensor:
        """This rank's contiguous share of ``x`` along dim 0 (sizes differ by at most one)."""
        n = x.shape[0]
        return x[self.rank * n // self.size : (self.rank + 1) * n // self.size]

    def owners(self, costs: Sequence[float]) -> list[int]:
        """The owner rank of each work item, balanced by cost (see :func:`assign_owners`)."""
        return assign_owners(costs, self.size)

    # -- tensors ---------------------------------------------------------------------------
    def all_reduce_(self, t: Tensor, *, symmetric: bool = False, kind: str = "statistics") -> Tensor:
        """Sum ``t`` over the ranks, in place; returns ``t``.

        Args:
            t: any tensor (contiguous or not).
            symmetric: ``t`` is a symmetric ``(n, n)`` matrix (or a stack ``(..., n, n)`` of
                them): only the upper triangle is sent, by blocks of rows, and the result
                is mirrored, so it is exactly symmetric.
            kind: the :class:`Traffic` kind.
        """
        if not self.distributed:
            return t
        if symmetric:
            for m in t.reshape(-1, *t.shape[-2:]):
                self._all_reduce_upper_(m, kind)
            return t
        buffer = t if t.is_contiguous() else t.contiguous()
        self._all_reduce(buffer, kind)
        if buffer is not t:
            t.copy_(buffer)
        return t

    def _all_reduce(self, buffer: Tensor, kind: str) -> None:
        import torch.distributed as dist

        self.traffic.add(kind, buffer.numel() * buffer.element_size())
        dist.all_reduce(buffer)

    def _all_reduce_upper_(self, m: Tensor, kind: str) -> None:
        """Reduce the upper triangle of a square ``m`` by blocks of rows, then mirror it."""
        import torch

        n = m.shape[-1]
        step = max(1, BLOCK_ELEMENTS // max(n, 1))
        for i0 in range(0, n, step):
            i1 = min(n, i0 + step)
            block = m[i0:i1, i0:].contiguous()  # rows i0..i1 from the diagonal on
            self._all_reduce(block, kind)
            m[i0:i1, i0:] = block
            m[i1:, i0:i1] = block[:, i1 - i0 :].T  # below the block: mirror of its right part
            square = block[:, : i1 - i0]
            m[i0:i1, i0:i1] = torch.triu(square) + torch.triu(square, 1).T

    def broadcast_(self, t: Tensor, src: int, *, kind: str = "weights") -> Tensor:
        """Overwrite ``t`` on every rank with rank ``src``'s ``t``, in place; returns ``t``."""
        if not self.distributed:
            return t
        import torch.distributed as dist

        buffer = t if t.is_contiguous() else t.contiguous()
        self.traffic.add(kind, buffer.numel() * buffer.element_size())
        dist.broadcast(buffer, src)
        if buffer is not t:
            t.copy_(buffer)
        return t

    # -- scalars and objects -----------------------------------------------------------
    def sum(self, value: T, *, kind: str = "threshold") -> T:
        """The sum over the ranks of an ``int`` or ``float`` (exact for ints, float64 otherwise)."""
        if not self.distributed:
            return value
        import torch

        dtype = torch.int64 if isinstance(value, int) else torch.float64
        t = torch.tensor([value], dtype=dtype)
        self._all_reduce(t, kind)
        return type(value)(t.item())  # type: ignore[return-value]

    def max(self, value: float, *, kind: str = "threshold") -> float:
        """The maximum over the ranks of ``value``."""
        if not self.distributed:
            return value
        import torch
        import torch.distributed as dist

        t = torch.tensor([float(value)], dtype=torch.float64)
        self.traffic.add(kind, t.element_size())
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return float(t.item())

    def gather_objects(self, obj: T, *, kind: str = "other") -> list[T]:
        """Every rank's ``obj`` (picklable), in rank order, on every rank."""
        if not self.distributed:
            return [obj]
        import torch.distributed as dist

        self.traffic.add(kind, len(pickle.dumps(obj)))
        out: list[Any] = [None] * self.size
        dist.all_gather_object(out, obj)
        return out

    def broadcast_object(self, obj: T, src: int = 0, *, kind: str = "other") -> T:
        """Rank ``src``'s ``obj`` (picklable) on every rank."""
        if not self.distributed:
            return obj
        import torch.distributed as dist

        box = [obj]
        if self.rank == src:
            self.traffic.add(kind, len(pickle.dumps(obj)))
        dist.broadcast_object_list(box, src)
        return box[0]


#: The communicator of the job in progress (a single process unless one is activated).
_SINGLE = Communicator()
_current: Communicator = _SINGLE


def current() -> Communicator:
    """The communicator of the job in progress; a single-process one outside any job."""
    return _current


@contextlib.contextmanager
def activate(comm: Communicator) -> Iterator[Communicator]:
    """Make ``comm`` the :func:`current` communicator inside the ``with`` block."""
    global _current
    previous, _current = _current, comm
    try:
        yield comm
    finally:
        _current = previous
