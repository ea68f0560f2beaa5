"""Which plugin an unexpected exception came from, read from the code its traceback ran.

A plugin's estimator, structure, method or adapter is called deep inside a run; when it
raises something that is not an llm-surgeon error, the user should learn which plugin
(and which distribution to report it to) rather than read a traceback. The innermost
frame of the traceback that runs a plugin's code decides: that is where the plugin
last had control.
"""

from __future__ import annotations

import traceback
from types import ModuleType

import attrs

from llm_surgeon.registry.registry import PluginRecord, Registry


@attrs.frozen
class Culprit:
    """The plugin whose code raised, and where.

    Attributes:
        plugin: the plugin's registered name.
        distribution: the distribution that installed it, and its version.
        item: the registered item whose code raised (``"method 'x'"``), if known.
        where: ``file:line in function`` of the innermost frame in the plugin's code.
    """

    plugin: str
    distribution: str
    item: str | None
    where: str


def _owner(module: str, owners: dict[str, object]) -> object | None:
    """The owner of the longest prefix of ``module`` in ``owners``."""
    best = None
    for prefix in owners:
        if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > len(best)):
            best = prefix
    return owners[best] if best is not None else None


def blame(exc: BaseException, registry: Registry) -> Culprit | None:
    """The plugin whose code raised ``exc``, or ``None`` if no plugin code is on its traceback."""
    plugins: dict[str, tuple[str, str, str]] = {}
    for name, plugin, distribution, version in registry.plugins():
        module = plugin.__name__ if isinstance(plugin, ModuleType) else type(plugin).__module__
        plugins[module] = (name, distribution, version)
    records: dict[str, PluginRecord] = {}
    for record in registry.records():
        records.setdefault(getattr(record.factory, "__module__", None) or "", record)
    frames = traceback.extract_tb(exc.__traceback__)
    modules = [frame.f_globals.get("__name__", "") for frame, _ in traceback.walk_tb(exc.__traceback__)]
    for frame, module in zip(reversed(frames), reversed(modules), strict=True):
        record = _owner(module, records)
        owner = _owner(module, plugins)
        if owner is None and isinstance(record, PluginRecord):
            owner = next((p for p in plugins.values() if p[0] == record.plugin), None)
        if owner is None:
            continue
        name, distribution, version = owner  # type: ignore[misc]
        item = f"{record.kind.value} {record.name!r}" if isinstance(record, PluginRecord) else None
        return Culprit(name, f"{distribution} {version}".strip(), item,
                       f"{frame.filename}:{frame.lineno} in {frame.name}")
    return None


def describe(exc: BaseException, registry: Registry | None) -> str:
    """One line about an unexpected exception, naming the plugin it came from if any."""
    culprit = blame(exc, registry) if registry is not None else None
    if culprit is None:
        return f"unexpected error: {type(exc).__name__}: {exc}"
    item = f" ({culprit.item})" if culprit.item else ""
    return (f"plugin {culprit.plugin!r} from distribution {culprit.distribution}{item} raised "
            f"{type(exc).__name__}: {exc} [{culprit.where}]")
