"""Schedules of per-shot target sizes, from dense (1.0) to the final size."""

from __future__ import annotations

from collections.abc import Callable

from llm_surgeon.errors import ConfigError

Schedule = Callable[[int, int, float], float]


def linear(shot: int, shots: int, final: float) -> float:
    """Size after shot ``shot`` (1-based) of ``shots``: linear from 1.0 to ``final``."""
    return 1.0 - (1.0 - final) * shot / shots


def cubic(shot: int, shots: int, final: float) -> float:
    """Gradual schedule of Zhu & Gupta (2017): large steps first, small steps last."""
    return final + (1.0 - final) * (1.0 - shot / shots) ** 3


SCHEDULES: dict[str, Schedule] = {"linear": linear, "cubic": cubic}


def get_schedule(name: str) -> Schedule:
    """The schedule called ``name``; a :class:`ConfigError` listing valid names otherwise."""
    try:
        return SCHEDULES[name]
    except KeyError:
        raise ConfigError(f"unknown schedule {name!r} (available: {', '.join(SCHEDULES)})") from None


def targets(name: str, shots: int, final: float) -> list[float]:
    """Target size after each shot; the last one is exactly ``final``."""
    schedule = get_schedule(name)
    sizes = [schedule(t, shots, final) for t in range(1, shots + 1)]
    sizes[-1] = final
    return sizes
