"""Calibration sources and their mixtures: ``wikitext2``, ``chat``, ``wikitext2:0.5,chat:0.5``.

A calibration spec names one source, or several as ``NAME:FRACTION`` pairs separated by
commas. A source is a text dataset (``wikitext2``, ``text``; read from the calibration
``data_dir``) or ``chat`` (conversations rendered with the model's chat template). The
fractions are fractions of the calibration windows and must sum to 1; the window
counts are rounded by largest remainder so that they add up to ``nsamples``.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence

import attrs

from llm_surgeon.data.text import DATASETS, dataset_name
from llm_surgeon.errors import ConfigError

#: The source of chat conversations.
CHAT = "chat"


@attrs.frozen
class Source:
    """One calibration source and its fraction of the windows."""

    name: str
    fraction: float


def _source_name(name: str) -> str:
    if name == CHAT:
        return CHAT
    try:
        return dataset_name(name)
    except ConfigError:
        known = [*DATASETS, CHAT]
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown calibration data {name!r}{hint} (available: {', '.join(known)}, "
                          "or a mixture such as wikitext2:0.5,chat:0.5)") from None


def _fraction(part: str, text: str) -> float:
    try:
        fraction = float(text)
    except ValueError:
        raise ConfigError(f"calibration data {part!r}: fraction {text!r} is not a number") from None
    if not 0.0 < fraction <= 1.0:
        raise ConfigError(f"calibration data {part!r}: fraction must be in (0, 1], got {fraction:g}")
    return fraction


def parse_sources(spec: str) -> tuple[Source, ...]:
    """The sources of a calibration spec.

    Args:
        spec: ``wikitext2``, ``chat``, or ``NAME:FRACTION,...`` (``wikitext2:0.5,chat:0.5``).

    Raises:
        ConfigError: an unknown source, a bad or missing fraction, a repeated source,
            two text datasets (they would share one ``data_dir``), or fractions that do
            not sum to 1.
    """
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    if not parts:
        raise ConfigError("calibration data is empty (e.g. wikitext2, chat or wikitext2:0.5,chat:0.5)")
    sources = []
    for part in parts:
        name, sep, fraction = (s.strip() for s in part.partition(":"))
        if not sep and len(parts) > 1:
            raise ConfigError(f"calibration mixture {spec!r}: give every source a fraction, "
                              f"NAME:FRACTION (got {part!r})")
        sources.append(Source(_source_name(name), _fraction(part, fraction) if sep else 1.0))
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise ConfigError(f"calibration mixture {spec!r} names a source twice")
    if sum(n != CHAT for n in names) > 1:
        raise ConfigError(f"calibration mixture {spec!r}: at most one text dataset "
                          "(all text comes from the one calibration data_dir)")
    total = sum(s.fraction for s in sources)
    if not math.isclose(total, 1.0, abs_tol=1e-6):
        raise ConfigError(f"calibration mixture {spec!r}: fractions sum to {total:g}, not 1")
    return tuple(sources)


def text_dataset(spec: str) -> str | None:
    """The text dataset of a calibration spec, or ``None`` if it is chat only."""
    return next((s.name for s in parse_sources(spec) if s.name != CHAT), None)


def uses_chat(spec: str) -> bool:
    """Whether a calibration spec draws windows from chat conversations."""
    return any(s.name == CHAT for s in parse_sources(spec))


def window_counts(sources: Sequence[Source], nsamples: int) -> list[int]:
    """Windows per source: ``fraction * nsamples`` rounded by largest remainder.

    The counts sum to ``nsamples`` and each is within one of its exact share.

    Raises:
        ConfigError: a source would get no window.
    """
    exact = [s.fraction * nsamples for s in sources]
    # round() first so that 0.29 * 100 = 28.999... counts as 29, not as 28 + remainder.
    counts = [math.floor(round(x, 9)) for x in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: (counts[i] - exact[i], i))
    for i in by_remainder[: nsamples - sum(counts)]:
        counts[i] += 1
    for source, count in zip(sources, counts, strict=True):
        if count == 0:
            raise ConfigError(f"calibration source {source.name}:{source.fraction:g} gets no window "
                              f"of {nsamples}; raise --nsamples or its fraction")
    return counts
