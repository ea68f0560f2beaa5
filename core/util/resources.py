"""Resource usage of this process and versions of the libraries behind a run's numbers."""

from __future__ import annotations

import platform
import resource
import sys

#: Distributions reported by :func:`library_versions` (key -> distribution name).
_LIBRARIES = {
    "llm-surgeon": "llm-surgeon",
    "torch": "torch",
    "transformers": "transformers",
    "peft": "peft",
    "pluggy": "pluggy",
}


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def library_versions() -> dict[str, str]:
    """Versions of Python and of the libraries that determine a run's numbers."""
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for key, dist in _LIBRARIES.items():
        try:
            versions[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[key] = "not installed"
    return versions
