"""Exception types of llm-surgeon."""

from __future__ import annotations

import re


class SurgeonError(Exception):
    """Base class of all errors llm-surgeon raises on purpose."""


class ConfigError(SurgeonError, ValueError):
    """Invalid user input, detected before any model is loaded (CLI exit code 2)."""


class PluginError(SurgeonError):
    """A plugin failed to load or register, or two plugins claim the same name."""


class UnsupportedArchitectureError(SurgeonError):
    """No architecture adapter is registered for a model type."""


class NumericalError(SurgeonError, FloatingPointError):
    """Non-finite statistics or a factorisation that failed even with escalated damping."""


class OutputError(SurgeonError):
    """Writing the output or a checkpoint failed (a full disk...); nothing half-written is left."""


_ATTRS_BOUND = re.compile(r"^'(?P<name>[^']+)' must be (?P<rule>[<>=!]+ ?\S+): (?P<value>.*)$", re.S)


def validation_message(exc: BaseException) -> str:
    """The message of a validation error, with attrs' bound checks made readable.

    attrs writes ``'shots' must be >= 1: 0``; this returns ``shots must be >= 1, got 0``.
    Other messages are returned unchanged.
    """
    if isinstance(exc, ValueError) and len(exc.args) == 4 and isinstance(exc.args[0], str):
        text = exc.args[0]  # attrs' in_: (message, attribute, options, value)
    else:
        text = str(exc)
    match = _ATTRS_BOUND.match(text)
    if match is None:
        return text
    return f"{match['name']} must be {match['rule']}, got {match['value']}"
