"""Exception types of llm-surgeon."""

from __future__ import annotations


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
