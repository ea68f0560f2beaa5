"""Symmetric sums of per-token outer products, ``sum_n x_n x_n^T = X^T X``, one triangle at a time.

``X^T X`` is symmetric, so only its upper triangle needs computing. torch has no ``syrk``;
:func:`add_gram_upper_` gets most of its saving from plain matrix products by splitting the
columns of ``X`` into blocks of about :data:`GRAM_BLOCK` and computing, per block row,
only the blocks on and right of the diagonal (``nb (nb + 1) / 2`` of ``nb^2`` blocks, as
``nb`` products of ``(b, T) x (T, d - s)``). Sums are accumulated that way over batches and
made symmetric once, at the end (:func:`mirror_upper_`). Products are float32 on float32
data: on CPUs without bfloat16 arithmetic (AVX2 only) bfloat16 and float16 matrix
products are several times slower than float32, so lower precision gains nothing there.
"""

from __future__ import annotations

from torch import Tensor

#: Width of the column blocks of :func:`add_gram_upper_`. Narrower blocks skip more of
#: the lower triangle but make smaller, less efficient products; about 256 columns keep
#: the products large on SmolLM2 widths (576: 3 blocks, 1536: 6 blocks).
GRAM_BLOCK = 256


def gram_blocks(d: int, block: int = GRAM_BLOCK) -> list[int]:
    """Boundaries ``[0, s_1, ..., d]`` of about equal column blocks of at most ``block``."""
    nb = max(1, -(-d // block))
    return [round(i * d / nb) for i in range(nb + 1)]


def _strip_sizes(bounds: list[int], d: int) -> list[int]:
    """Numbers in each block row ``s..e`` of the upper block triangle (columns ``s..d``)."""
    return [(e - s) * (d - s) for s, e in zip(bounds[:-1], bounds[1:], strict=True)]


def packed_size(d: int, block: int = GRAM_BLOCK) -> int:
    """Numbers a :class:`PackedUpper` of a ``(d, d)`` matrix stores."""
    return sum(_strip_sizes(gram_blocks(d, block), d))


def add_gram_upper_(out: Tensor, x: Tensor, block: int = GRAM_BLOCK) -> Tensor:
    """``out += X^T X`` on the upper block triangle (the rest of ``out`` is left as is).

    Args:
        out: ``(d, d)`` accumulator, same dtype and device as ``x``.
        x: ``(T, d)``.
        block: column block width.

    Returns:
        ``out``, whose upper triangle (``j >= i``) now includes ``X^T X``.
    """
    bounds = gram_blocks(x.shape[1], block)
    for s, e in zip(bounds[:-1], bounds[1:], strict=True):
        out[s:e, s:].addmm_(x[:, s:e].T, x[:, s:])
    return out


def gram_upper(x: Tensor, block: int = GRAM_BLOCK) -> Tensor:
    """``X^T X`` with only its upper triangle valid, ``(d, d)`` (see :func:`add_gram_upper_`)."""
    d = x.shape[1]
    return add_gram_upper_(x.new_zeros(d, d), x, block)


def mirror_upper_(m: Tensor) -> Tensor:
    """Make ``m`` (``(d, d)``) symmetric from its upper triangle, in place; returns ``m``."""
    lower = m.T.tril(-1)  # the strict upper triangle, transposed
    return m.triu_().add_(lower)


class PackedUpper:
    """The upper block triangle of a symmetric ``(d, d)`` matrix, stored as one flat tensor.

    Block row ``i`` (rows ``s_i..e_i`` of :func:`gram_blocks`) keeps columns ``s_i..d``:
    ``sum_i (e_i - s_i)(d - s_i)`` numbers instead of ``d^2`` (58% at ``d = 1536``, 67%
    at 576), so a running symmetric sum needs less memory as well as less work.
    """

    def __init__(self, d: int, dtype, device, block: int = GRAM_BLOCK) -> None:
        import torch

        self.d = d
        self.bounds = gram_blocks(d, block)
        sizes = _strip_sizes(self.bounds, d)
        self.flat = torch.zeros(sum(sizes), dtype=dtype, device=device)
        self.strips: list[Tensor] = []
        offset = 0
        for (s, e), size in zip(zip(self.bounds[:-1], self.bounds[1:], strict=True), sizes, strict=True):
            self.strips.append(self.flat[offset : offset + size].view(e - s, d - s))
            offset += size

    def _pairs(self):
        return zip(self.bounds[:-1], self.bounds[1:], self.strips, strict=True)

    def add_gram_(self, x: Tensor) -> None:
        """Add ``X^T X`` (``x: (T, d)``, same dtype and device)."""
        for s, e, strip in self._pairs():
            strip.addmm_(x[:, s:e].T, x[:, s:])

    def add_(self, m: Tensor) -> None:
        """Add a symmetric ``(d, d)`` matrix of which only the upper triangle is valid."""
        for s, e, strip in self._pairs():
            strip.add_(m[s:e, s:].to(strip.device))

    def full(self) -> Tensor:
        """The symmetric ``(d, d)`` matrix."""
        import torch

        out = torch.empty(self.d, self.d, dtype=self.flat.dtype, device=self.flat.device)
        for s, e, strip in self._pairs():
            out[s:e, s:] = strip
        return mirror_upper_(out)
