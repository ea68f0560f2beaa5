"""The ``N:M`` spelling of semi-structured structures (``2:4``: remove 2 of every 4)."""

from __future__ import annotations

import re

from llm_surgeon.errors import ConfigError

_NM = re.compile(r"^(\d+):(\d+)$")

#: Registered name of the N:M structure; ``--structure 2:4`` maps to it with ``n=2, m=4``.
NM_STRUCTURE = "n:m"


def parse_nm(structure: str) -> tuple[int, int] | None:
    """``(n, m)`` for a structure written ``N:M`` (e.g. ``2:4``), else ``None``."""
    m = _NM.match(structure)
    return (int(m.group(1)), int(m.group(2))) if m else None


def check_nm(structure: str) -> None:
    """Raise :class:`ConfigError` for an ``N:M`` spelling that is not ``0 < N < M``."""
    nm = parse_nm(structure)
    if nm is not None and not (0 < nm[0] < nm[1]):
        raise ConfigError(f"N:M structure needs 0 < N < M, got {structure!r}")


def structure_request(structure: str, options: dict) -> tuple[str, dict]:
    """The registered structure name and its options (``2:4`` -> ``n:m`` with ``n=2, m=4``).

    Raises:
        ConfigError: ``options`` already set ``n`` or ``m`` to something else.
    """
    options = dict(options)
    nm = parse_nm(structure)
    if nm is None:
        return structure, options
    for key, value in zip(("n", "m"), nm, strict=True):
        if key in options and options[key] != value:
            raise ConfigError(f"--structure {structure} conflicts with structure option {key}={options[key]}")
        options[key] = value
    return NM_STRUCTURE, options
