"""A small on-disk cache of dense perplexities, so repeated runs skip the "before" evaluation.

The key covers the model file (path, size, modification time), dtype, device type and
the exact evaluation windows. Set ``LLM_SURGEON_CACHE=off`` to disable, or to a folder
to move it (default ``~/.cache/llm-surgeon``).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from torch import Tensor

from llm_surgeon.config import RunConfig


def _folder() -> Path | None:
    setting = os.environ.get("LLM_SURGEON_CACHE", "")
    if setting.lower() in {"off", "0", "false", "no"}:
        return None
    return Path(setting) if setting else Path.home() / ".cache" / "llm-surgeon"


def key(config: RunConfig, windows: Tensor) -> str | None:
    """Cache key of the dense perplexity, or ``None`` if the model is not a local file/folder."""
    from llm_surgeon.models import resolve_model_path

    try:
        source = resolve_model_path(config.model)
        path = Path(str(getattr(source, "path", source)))
        stat = path.stat()
    except Exception:
        return None
    h = hashlib.sha256()
    h.update(json.dumps([str(path.resolve()), stat.st_size, stat.st_mtime_ns, config.dtype,
                         config.device.split(":")[0]]).encode())
    h.update(windows.cpu().numpy().tobytes())
    return h.hexdigest()


def get(cache_key: str | None) -> float | None:
    """The cached perplexity for ``cache_key``, if any."""
    folder = _folder()
    if cache_key is None or folder is None:
        return None
    try:
        return float(json.loads((folder / f"ppl-{cache_key}.json").read_text())["ppl"])
    except (OSError, ValueError, KeyError):
        return None


def put(cache_key: str | None, ppl: float) -> None:
    """Remember ``ppl`` under ``cache_key`` (best effort)."""
    folder = _folder()
    if cache_key is None or folder is None:
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".ppl-{cache_key}.tmp"
        tmp.write_text(json.dumps({"ppl": ppl}))
        tmp.replace(folder / f"ppl-{cache_key}.json")
    except OSError:
        pass
