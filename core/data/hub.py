"""The Hugging Face hub: is it reachable, and switching it off for a call.

``datasets`` retries an unreachable hub for about 25 s before it gives up; the probe
here answers in at most a few seconds, once per process.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import socket
from collections.abc import Iterator
from types import ModuleType
from typing import Any
from urllib.parse import urlparse

_OFFLINE_ENV = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


def offline_requested() -> bool:
    """Whether the environment switches the hub off (``HF_HUB_OFFLINE=1`` and friends)."""
    return any(os.environ.get(k, "").lower() in {"1", "true", "yes", "on"} for k in _OFFLINE_ENV)


@functools.lru_cache(maxsize=1)
def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the hub (``HF_ENDPOINT``, default huggingface.co) opens."""
    if offline_requested():
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "huggingface.co", port), timeout=timeout):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def hub_offline(enabled: bool = True) -> Iterator[None]:
    """Switch the Hugging Face hub off (env vars and already-imported flags), then restore."""
    if not enabled:
        yield
        return
    saved_env = {k: os.environ.get(k) for k in _OFFLINE_ENV}
    # huggingface_hub and datasets read these env vars once, at import; patch their copies too.
    patched: list[tuple[ModuleType, str, Any]] = []
    targets = (
        ("huggingface_hub.constants", "HF_HUB_OFFLINE"),
        ("datasets.config", "HF_HUB_OFFLINE"),
        ("datasets.config", "HF_DATASETS_OFFLINE"),
    )
    os.environ.update(dict.fromkeys(_OFFLINE_ENV, "1"))
    try:
        for mod_name, attr in targets:
            try:
                mod = importlib.import_module(mod_name)
            except ImportError:
                continue
            if hasattr(mod, attr):
                patched.append((mod, attr, getattr(mod, attr)))
                setattr(mod, attr, True)
        yield
    finally:
        for mod, attr, value in reversed(patched):
            setattr(mod, attr, value)
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


