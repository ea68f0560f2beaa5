"""The plugin registry: hook specifications, entry-point loading, named records."""

from llm_surgeon.registry.hookspecs import hookimpl, hookspec
from llm_surgeon.registry.registry import (
    ENTRY_POINT_GROUP,
    LOAD_PLUGINS_ENV,
    Kind,
    PluginRecord,
    Registry,
    get_registry,
    reset_registry,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "LOAD_PLUGINS_ENV",
    "Kind",
    "PluginRecord",
    "Registry",
    "get_registry",
    "hookimpl",
    "hookspec",
    "reset_registry",
]
