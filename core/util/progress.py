"""Progress bars: a thin wrapper over :mod:`tqdm` that can be switched off."""

from __future__ import annotations

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
