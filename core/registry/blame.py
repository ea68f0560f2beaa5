"""Which plugin an unexpected exception came from, read from the code its traceback ran.

A plugin's estimator, structure, method or adapter is called deep inside a run; when it
raises something that is not an llm-surgeon error, the user should learn which plugin
(and which distribution to report it to) rather than read a traceback. The innermost
frame of the traceback that runs a plugin's code decides: that is where the plugin
last had control.
"""

from __future__ import annotations

import traceback
from types import FrameType, ModuleType

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


def _owner(module: str, owners: dict[str, tuple[str, str, str]]) -> tuple[str, str, str] | None:
    """The owner of the longest prefix of ``module`` in ``owners``."""
    best = None
    for prefix in owners:
        if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > len(best)):
            best = prefix
    return owners[best] if best is not None else None


def _plugin_modules(registry: Registry) -> dict[str, tuple[str, str, str]]:
    """Module name -> ``(plugin, distribution, version)``: plugin modules and factories' modules."""
    owners: dict[str, tuple[str, str, str]] = {}
    for name, plugin, distribution, version in registry.plugins():
        module = plugin.__name__ if isinstance(plugin, ModuleType) else type(plugin).__module__
        owners[module] = (name, distribution, version)
    by_name = {owner[0]: owner for owner in owners.values()}
    for record in registry.records():
        module = getattr(record.factory, "__module__", None)
        if module and record.plugin in by_name:
            owners.setdefault(module, by_name[record.plugin])
    return owners


def _item(frames: list[FrameType], records: list[PluginRecord]) -> str | None:
    """The registered item whose instance (``self``) runs the innermost of ``frames``."""
    classes = [(r.factory, r) for r in records if isinstance(r.factory, type)]
    for frame in frames:
        obj = frame.f_locals.get("self")
        for cls, record in classes:
            if obj is not None and isinstance(obj, cls):
                return f"{record.kind.value} {record.name!r}"
    return None


def blame(exc: BaseException, registry: Registry) -> Culprit | None:
    """The plugin whose code raised ``exc``, or ``None`` if no plugin code is on its traceback."""
    owners = _plugin_modules(registry)
    frames = [(frame, lineno) for frame, lineno in traceback.walk_tb(exc.__traceback__)][::-1]
    mine = [(frame, lineno, owner) for frame, lineno in frames
            if (owner := _owner(frame.f_globals.get("__name__", ""), owners)) is not None]
    if not mine:
        return None
    frame, lineno, (name, distribution, version) = mine[0]
    ours = [f for f, _, owner in mine if owner[0] == name]
    records = [r for r in registry.records() if r.plugin == name]
    return Culprit(name, f"{distribution} {version}".strip(), _item(ours, records),
                   f"{frame.f_code.co_filename}:{lineno} in {frame.f_code.co_name}")


def describe(exc: BaseException, registry: Registry | None) -> str:
    """One line about an unexpected exception, naming the plugin it came from if any."""
    culprit = blame(exc, registry) if registry is not None else None
    if culprit is None:
        return f"unexpected error: {type(exc).__name__}: {exc}"
    item = f" ({culprit.item})" if culprit.item else ""
    return (f"plugin {culprit.plugin!r} from distribution {culprit.distribution}{item} raised "
            f"{type(exc).__name__}: {exc} [{culprit.where}]")
