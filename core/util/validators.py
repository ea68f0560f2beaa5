"""attrs validators that attrs itself does not ship."""

from __future__ import annotations

import attrs

from llm_surgeon.errors import ConfigError


def fraction(instance: object, attribute: attrs.Attribute, value: float) -> None:
    """``value`` lies in ``(0, 1]`` (a fraction of weights kept, of windows used...)."""
    if not (0.0 < value <= 1.0):
        raise ValueError(f"{attribute.name} must be in (0, 1], got {value}")


def one_of(*choices: str):
    """An attrs validator: the value is one of ``choices`` (a :class:`ConfigError` listing them).

    attrs' own ``in_`` raises a ``ValueError`` whose text is a tuple with the attribute's
    repr; this one says ``group must be one of row, layer; got 'column'``.
    """

    def check(instance: object, attribute: attrs.Attribute, value: object) -> None:
        if value not in choices:
            raise ConfigError(f"{attribute.name} must be one of {', '.join(choices)}; got {value!r}")

    return check
