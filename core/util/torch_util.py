"""The one table of dtype names, the one "where does this model live" helper, thread counts."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from llm_surgeon.errors import ConfigError
from llm_surgeon.util.validators import one_of

if TYPE_CHECKING:
    import torch
    from torch import nn

#: dtype names users may give for model weights.
MODEL_DTYPES = ("float32", "float64", "float16", "bfloat16")
#: dtype names users may give for accumulated statistics (curvature, Hessians).
STATISTICS_DTYPES = ("float32", "float64")
#: attrs validator of a statistics dtype name.
statistics_dtype = one_of(*STATISTICS_DTYPES)


def torch_dtype(name: str, allowed: tuple[str, ...] = MODEL_DTYPES) -> torch.dtype:
    """The :class:`torch.dtype` called ``name`` (``float32``, ``bfloat16``...).

    Raises:
        ConfigError: ``name`` is not one of ``allowed``.
    """
    import torch

    if name not in allowed:
        raise ConfigError(f"unknown dtype {name!r} (valid: {', '.join(allowed)})")
    return getattr(torch, name)


def model_device(model: nn.Module) -> torch.device:
    """Device of ``model``'s first parameter (the CPU for a model without parameters)."""
    import torch

    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the body with ``n`` intra-op threads, restoring the previous count after.

    For loops of small operations (chunk solves of a few hundred weights) and for LAPACK
    calls whose multi-threaded CPU path is slow: on a 2-core machine shared with other
    jobs, MKL's two-thread ``potri`` of a 1536 x 1536 float64 factor took 9.3 s against
    0.39 s on one thread, and a loop of 256-weight chunk solves 68 times as long.
    """
    import torch

    before = torch.get_num_threads()
    if n >= before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
