"""Per-token tensors of one Linear module in one batch: inputs ``a`` and output gradients ``g``.

Tokens are the positions that predict a next token, i.e. positions ``0..S-2`` of each
window of ``S`` tokens (the last position has no label and a zero gradient), so one
batch of ``B`` windows has ``T = B * (S - 1)`` tokens. ``a`` carries a trailing ``1``
when the layer has a bias, so that ``theta = [W | b]`` acts on it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from llm_surgeon.curvature.symmetric import gram_upper, mirror_upper_


class GramCache:
    """The Gram matrices of the last few distinct inputs of a batch, with those inputs.

    Modules that read the same input tensor one after another (q/k/v, gate/up) share one
    Gram matrix. Only :data:`size` entries are kept: holding every Gram matrix of a
    batch until its end would hold one ``(d_in, d_in)`` matrix per input of every layer
    (about 400 MB for SmolLM2-135M). An entry keeps its input alive, so that the input's
    storage (part of the key) cannot be reused by another tensor while the entry exists.
    """

    size = 4

    def __init__(self) -> None:
        self._entries: dict[tuple, tuple[Tensor, Tensor]] = {}

    def get(self, x: Tensor, key: tuple, compute: Callable[[], Tensor]) -> Tensor:
        """The Gram matrix cached for ``x`` under ``key`` (computed and kept if missing)."""
        full = (x.data_ptr(), x.storage_offset(), tuple(x.shape), x.stride(), x._version, *key)
        entry = self._entries.pop(full, None)
        if entry is None:
            entry = (x, compute())
            while len(self._entries) >= self.size:
                self._entries.pop(next(iter(self._entries)))
        self._entries[full] = entry  # most recent last
        return entry[1]

    def clear(self) -> None:
        """Forget every entry."""
        self._entries.clear()


class ModuleTokens:
    """Per-token tensors of one module in one batch, built lazily.

    Attributes:
        index: position of the module in the ``modules`` list given to :func:`run_pass`.
        g: ``(T, d_out)`` output gradients in the statistics dtype (``None`` in forward
            callbacks), already scaled by ``1/sqrt(samples)``.
    """

    def __init__(
        self,
        index: int,
        x: Tensor | None,
        has_bias: bool,
        dtype: torch.dtype,
        batch_shape: tuple[int, int],
        gram_cache: GramCache | None = None,
        g: Tensor | None = None,
    ) -> None:
        self.index = index
        self._x = x
        self._has_bias = has_bias
        self._dtype = dtype
        self._batch_shape = batch_shape
        self._gram_cache = gram_cache
        self._a: Tensor | None = None
        self.g = g

    @property
    def a(self) -> Tensor:
        """``(T, d_in)`` inputs in the statistics dtype, bias column of ones last."""
        if self._x is None:
            raise RuntimeError("this observer said its backward callbacks read no inputs "
                               "(backward_inputs = False); tokens.a is not available there")
        if self._a is None:
            self._a = token_inputs(self._x, self._has_bias, self._dtype, self._batch_shape)
        return self._a

    def gram(self, upper: bool = False) -> Tensor:
        """``sum_n a_n a_n^T``: ``(d_in, d_in)``, shared by modules that read the same input.

        Args:
            upper: compute only the upper triangle (about half the work); the rest of the
                result is unspecified (see :mod:`llm_surgeon.curvature.symmetric`).
        """
        if self._gram_cache is None:
            return self._gram(upper)
        return self._gram_cache.get(self._x, (self._has_bias, upper), lambda: self._gram(upper))

    def _gram(self, upper: bool) -> Tensor:
        out = gram_upper(self.a)
        return out if upper else mirror_upper_(out)


def token_inputs(x: Tensor, has_bias: bool, dtype: torch.dtype, batch_shape: tuple[int, int]) -> Tensor:
    """Inputs of the tokens that predict a next token.

    Args:
        x: ``(B, S, d)`` layer input, or any shape with ``B * S`` rows of ``d`` (OPT
            flattens tokens before its MLP).
        has_bias: append a column of ones.
        dtype: dtype of the result.
        batch_shape: ``(B, S)`` of the token batch.

    Returns:
        ``(B * (S - 1), d + has_bias)``.
    """
    a = _positions(x, batch_shape).to(dtype)
    if has_bias:
        a = torch.cat([a, a.new_ones(a.shape[0], 1)], dim=1)
    return a


def _positions(x: Tensor, batch_shape: tuple[int, int]) -> Tensor:
    """Rows of positions ``0..S-2``: ``(B * (S - 1), d)`` from ``x`` with ``B * S`` rows."""
    b, s = batch_shape
    return x.reshape(b, s, x.shape[-1])[:, :-1].reshape(-1, x.shape[-1])


def token_grads(grad: Tensor, dtype: torch.dtype, batch_shape: tuple[int, int], scale: float = 1.0) -> Tensor:
    """Output gradients ``(B, S, d_out) -> (B * (S - 1), d_out)`` in ``dtype``, times ``scale``."""
    g = _positions(grad, batch_shape).to(dtype)
    return g if scale == 1.0 else g * scale
