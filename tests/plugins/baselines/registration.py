"""Make ``sparsegpt`` and ``wanda`` available in the process-wide registry for tests.

Once the built-in baselines plugin registers them, this does nothing.
"""

from __future__ import annotations

import pytest

from llm_surgeon.plugins.baselines.sparsegpt import register_sparsegpt
from llm_surgeon.plugins.baselines.wanda import register_wanda
from llm_surgeon.registry import Kind, get_registry, hookimpl

PLUGIN_NAME = "test-layerwise-baselines"


class _LayerwisePlugin:
    @staticmethod
    @hookimpl
    def register_methods(register):
        register_sparsegpt(register)
        register_wanda(register)


def ensure_registered(*structures: str) -> str | None:
    """Register the two methods if needed; skip the test if a structure is missing.

    Returns:
        The name of the plugin added (to remove afterwards), or ``None``.
    """
    registry = get_registry()
    missing = [s for s in structures if s not in registry.names(Kind.STRUCTURE)]
    if missing:
        pytest.skip(f"structure(s) {missing} not registered yet")
    if "sparsegpt" in registry.names(Kind.METHOD):
        return None
    registry.add_plugin(_LayerwisePlugin(), PLUGIN_NAME)
    return PLUGIN_NAME


def unregister(name: str | None) -> None:
    """Undo :func:`ensure_registered`."""
    if name is not None:
        get_registry().remove_plugin(name)
