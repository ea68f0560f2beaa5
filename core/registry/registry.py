"""Plugin discovery and the registry of named curvatures, structures, methods and adapters.

Plugins are modules exposed under the ``llm_surgeon`` entry-point group. The built-ins
of this package are declared there too, so they load exactly like third-party ones.
Each plugin's hook implementations are called one at a time so that every registered
item records the plugin and distribution that provided it.
"""

from __future__ import annotations

import difflib
import importlib.metadata as md
import os
import threading
from collections.abc import Callable
from enum import Enum
from importlib.metadata import EntryPoint
from typing import Any

import attrs
import pluggy

from llm_surgeon.errors import ConfigError, PluginError, validation_message
from llm_surgeon.registry import hookspecs

ENTRY_POINT_GROUP = "llm_surgeon"
#: Comma-separated distribution names; when set, only their plugins are loaded.
LOAD_PLUGINS_ENV = "LLM_SURGEON_LOAD_PLUGINS"


class Kind(str, Enum):
    """The four kinds of plugin."""

    CURVATURE = "curvature"
    STRUCTURE = "structure"
    METHOD = "method"
    ARCHITECTURE = "architecture"


_HOOK_OF_KIND = {
    Kind.CURVATURE: "register_curvatures",
    Kind.STRUCTURE: "register_structures",
    Kind.METHOD: "register_methods",
    Kind.ARCHITECTURE: "register_architectures",
}


@attrs.frozen
class PluginRecord:
    """One registered item and where it came from."""

    kind: Kind
    name: str
    factory: Callable[..., Any] = attrs.field(eq=False, repr=False)
    config_cls: type | None = attrs.field(eq=False, repr=False)
    description: str
    plugin: str
    distribution: str
    version: str

    def default_config(self) -> Any:
        """The plugin's config with all defaults, or ``None`` if it takes none."""
        return None if self.config_cls is None else self.config_cls()

    def make_config(self, **options: Any) -> Any:
        """Build the plugin's config from keyword options, validating names and values."""
        if self.config_cls is None:
            if options:
                raise ConfigError(f"{self.kind.value} {self.name!r} takes no options, got {sorted(options)}")
            return None
        fields = {f.name for f in attrs.fields(self.config_cls)}
        unknown = sorted(set(options) - fields)
        if unknown:
            raise ConfigError(
                f"unknown option(s) {unknown} for {self.kind.value} {self.name!r}; "
                f"valid: {sorted(fields)}"
            )
        try:
            return self.config_cls(**options)
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"bad option for {self.kind.value} {self.name!r}: {validation_message(exc)}"
            ) from exc

    def create(self, config: Any = None) -> Any:
        """Build a fresh instance; ``config=None`` means the defaults."""
        if config is None:
            config = self.default_config()
        return self.factory(config) if self.config_cls is not None else self.factory()

    def to_json(self) -> dict[str, str]:
        """A JSON-friendly summary (used by ``llm-surgeon plugins --json``)."""
        return {
            "kind": self.kind.value,
            "name": self.name,
            "description": self.description,
            "plugin": self.plugin,
            "distribution": self.distribution,
            "version": self.version,
        }


class Registry:
    """Named items of every kind, filled from plugins."""

    def __init__(self) -> None:
        self._items: dict[Kind, dict[str, PluginRecord]] = {k: {} for k in Kind}
        self.plugin_manager = pluggy.PluginManager("llm_surgeon")
        self.plugin_manager.add_hookspecs(hookspecs)
        self._provenance: dict[str, tuple[str, str]] = {}

    # -- loading --------------------------------------------------------------
    def load_entry_points(self) -> None:
        """Load every plugin of the ``llm_surgeon`` entry-point group with pluggy.

        pluggy imports each module and records its distribution
        (``list_plugin_distinfo``); only the ones allowed by ``$LLM_SURGEON_LOAD_PLUGINS``
        (and llm-surgeon's own) are loaded. Then each plugin's hooks are called one plugin
        at a time, so every registered item knows its provider.
        """
        entry_points = _entry_points()
        _check_unique_names(entry_points)
        allowed = os.environ.get(LOAD_PLUGINS_ENV)
        if allowed:
            allow = {a.strip() for a in allowed.split(",") if a.strip()} | {"llm-surgeon"}
            for ep, dist in entry_points:
                if dist not in allow:
                    self.plugin_manager.set_blocked(ep.name)
        try:
            self.plugin_manager.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"plugin {exc.plugin!r} has an invalid hook implementation: {exc}") from exc
        except Exception as exc:
            raise self._import_error(entry_points, exc) from exc
        loaded = [(self.plugin_manager.get_name(plugin), dist)
                  for plugin, dist in self.plugin_manager.list_plugin_distinfo()]
        loaded = [(name, dist) for name, dist in loaded if name is not None and name not in self._provenance]
        for name, dist in loaded:
            self._provenance[name] = (dist.project_name, dist.version)
        self._check_pending()
        for name, dist in loaded:
            self._collect(name, dist.project_name, dist.version)

    def _import_error(self, entry_points: list[tuple[EntryPoint, str]], exc: Exception) -> PluginError:
        """The error naming the entry point whose import raised ``exc``."""
        for ep, dist in entry_points:
            if self.plugin_manager.has_plugin(ep.name) or self.plugin_manager.is_blocked(ep.name):
                continue
            try:
                ep.load()
            except Exception as failure:
                version = md.distribution(dist).version
                return PluginError(f"plugin {ep.name!r} ({ep.value}) from distribution {dist} "
                                   f"{version} failed to import: {failure!r}")
        return PluginError(f"loading llm_surgeon plugins failed: {exc!r}")

    def add_plugin(self, plugin: object, name: str, distribution: str = "<local>", version: str = "") -> None:
        """Register one plugin object (a module or an instance with hook implementations)."""
        if self.plugin_manager.has_plugin(name):
            other = self._provenance.get(name, ("?", ""))
            raise PluginError(
                f"two plugins are named {name!r}: from {other[0]} and from {distribution}"
            )
        try:
            self.plugin_manager.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:
            raise PluginError(
                f"plugin {name!r} from distribution {distribution} has an invalid hook "
                f"implementation: {exc}"
            ) from exc
        self._provenance[name] = (distribution, version)
        try:
            self._check_pending()
        except PluginError:
            self.plugin_manager.unregister(name=name)
            self._provenance.pop(name, None)
            raise
        self._collect(name, distribution, version)

    def _check_pending(self) -> None:
        try:
            self.plugin_manager.check_pending()
        except pluggy.PluginValidationError as exc:
            name = self.plugin_manager.get_name(exc.plugin) or repr(exc.plugin)
            distribution = self._provenance.get(name, ("?", ""))[0]
            raise PluginError(
                f"plugin {name!r} from distribution {distribution} implements an unknown hook "
                f"(known: {', '.join(_HOOK_OF_KIND.values())}): {exc}"
            ) from exc

    def _collect(self, name: str, distribution: str, version: str) -> None:
        """Call plugin ``name``'s hooks, recording what it registers."""
        for kind, hook_name in _HOOK_OF_KIND.items():
            hook = getattr(self.plugin_manager.hook, hook_name)
            for impl in hook.get_hookimpls():
                if impl.plugin_name != name:
                    continue
                register = self._register_fn(kind, name, distribution, version)
                try:
                    impl.function(register=register)
                except PluginError:
                    self.remove_plugin(name)
                    raise
                except Exception as exc:
                    self.remove_plugin(name)
                    raise PluginError(
                        f"plugin {name!r} from distribution {distribution} raised while "
                        f"registering {kind.value}s: {exc!r}"
                    ) from exc

    def remove_plugin(self, name: str) -> None:
        """Unregister a plugin and everything it registered (used by tests)."""
        self.plugin_manager.unregister(name=name)
        self._provenance.pop(name, None)
        for items in self._items.values():
            for key in [k for k, r in items.items() if r.plugin == name]:
                del items[key]

    def _register_fn(self, kind: Kind, plugin: str, distribution: str, version: str):
        def register(name: str, factory: Callable[..., Any], config: type | None = None,
                     description: str = "") -> None:
            if not isinstance(name, str) or not name:
                raise PluginError(f"plugin {plugin!r} registered a {kind.value} without a name")
            existing = self._items[kind].get(name)
            if existing is not None:
                raise PluginError(
                    f"{kind.value} {name!r} is registered twice: by plugin {existing.plugin!r} "
                    f"({existing.distribution}) and by plugin {plugin!r} ({distribution})"
                )
            if config is not None and not attrs.has(config):
                raise PluginError(f"{kind.value} {name!r} from {plugin!r}: config must be an attrs class")
            self._items[kind][name] = PluginRecord(
                kind=kind, name=name, factory=factory, config_cls=config,
                description=(description or (factory.__doc__ or "")).strip().splitlines()[0]
                if (description or factory.__doc__) else "",
                plugin=plugin, distribution=distribution, version=version,
            )

        return register

    # -- lookup ---------------------------------------------------------------
    def names(self, kind: Kind) -> list[str]:
        """Registered names of one kind, sorted."""
        return sorted(self._items[Kind(kind)])

    def get(self, kind: Kind | str, name: str) -> PluginRecord:
        """The record of ``name``; a :class:`ConfigError` with a did-you-mean if unknown."""
        kind = Kind(kind)
        try:
            return self._items[kind][name]
        except KeyError:
            names = self.names(kind)
            close = difflib.get_close_matches(name, names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"unknown {kind.value} {name!r}{hint} (available: {', '.join(names) or 'none'})"
            ) from None

    def records(self) -> list[PluginRecord]:
        """Every registered item, by kind then name."""
        return [r for k in Kind for _, r in sorted(self._items[k].items())]

    def plugins(self) -> list[tuple[str, object, str, str]]:
        """``(name, plugin object, distribution, version)`` of every loaded plugin."""
        return [(name, plugin, *self._provenance.get(name, ("?", "")))
                for name, plugin in self.plugin_manager.list_name_plugin() if plugin is not None]


def _entry_points() -> list[tuple[EntryPoint, str]]:
    """Every ``llm_surgeon`` entry point with its distribution's name, each once."""
    seen: set[tuple[str, str, str]] = set()
    out = []
    for dist in md.distributions():
        name = dist.metadata["Name"] or "?"
        for ep in dist.entry_points:
            key = (name, ep.name, ep.value)
            if ep.group == ENTRY_POINT_GROUP and key not in seen:  # a dist seen twice on sys.path
                seen.add(key)
                out.append((ep, name))
    return out


def _check_unique_names(entry_points: list[tuple[EntryPoint, str]]) -> None:
    """Two different plugins under one entry-point name are an error naming both."""
    by_name: dict[str, tuple[EntryPoint, str]] = {}
    for ep, dist in entry_points:
        other = by_name.setdefault(ep.name, (ep, dist))
        if other[0].value != ep.value:
            raise PluginError(
                f"two plugins are named {ep.name!r}: {other[0].value} from {other[1]} and "
                f"{ep.value} from {dist}"
            )


_registry: Registry | None = None
_lock = threading.Lock()


def get_registry() -> Registry:
    """The process-wide registry, loading the entry points on first use."""
    global _registry
    with _lock:
        if _registry is None:
            registry = Registry()
            registry.load_entry_points()
            _registry = registry
        return _registry


def loaded_registry() -> Registry | None:
    """The process-wide registry if it was loaded, without loading it."""
    return _registry


def reset_registry() -> None:
    """Forget the loaded registry so the next :func:`get_registry` reloads (tests)."""
    global _registry
    with _lock:
        _registry = None
