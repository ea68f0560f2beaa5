"""Progress bars: a thin wrapper over :mod:`tqdm` that can be switched off."""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def progress_bar(
    iterable: Iterable[T],
    *,
    total: int | None = None,
    desc: str,
    enabled: bool = True,
) -> Iterator[T]:
    """Iterate over ``iterable`` while drawing a progress bar on stderr.

    Args:
        iterable: the items to iterate over.
        total: number of items, if ``iterable`` has no ``len``.
        desc: short label shown before the bar.
        enabled: ``False`` iterates silently (no tqdm object is created).

    Yields:
        The items of ``iterable``, unchanged.
    """
    if not enabled:
        yield from iterable
        return
    from tqdm.auto import tqdm

    with tqdm(iterable, total=total, desc=desc, file=sys.stderr, leave=False, dynamic_ncols=True) as bar:
        yield from bar


@contextlib.contextmanager
def no_progress_bars(enabled: bool = True) -> Iterator[None]:
    """Inside, every tqdm progress bar of the process is off: llm-surgeon's and the
    libraries' (transformers' GGUF conversion and weight loading, datasets, lm-eval).

    tqdm bars of all kinds go through ``tqdm.std.tqdm.__init__``, which is wrapped to pass
    ``disable=True``; the original is restored on exit. ``enabled=False`` does nothing.
    """
    if not enabled:
        yield
        return
    from tqdm import std

    original = std.tqdm.__init__

    @functools.wraps(original)
    def silenced(self, *args, **kwargs):
        kwargs["disable"] = True
        original(self, *args, **kwargs)

    std.tqdm.__init__ = silenced
    try:
        yield
    finally:
        std.tqdm.__init__ = original
