"""A small on-disk cache of dense perplexities, so repeated runs skip the "before" evaluation.

The key covers the model file (path, size, modification time), dtype, device type and
the exact evaluation windows (shape and token ids). Set ``LLM_SURGEON_CACHE=off`` to disable, or to a folder
to move it (default ``~/.cache/llm-surgeon``).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from torch import Tensor

from llm_surgeon.errors import ConfigError
from llm_surgeon.model.loading import ModelSource, resolve_model_path
from llm_surgeon.run.config import RunConfig


def cache_folder() -> Path | None:
    """The cache folder, or ``None`` when ``LLM_SURGEON_CACHE`` switches caching off."""
    setting = os.environ.get("LLM_SURGEON_CACHE", "")
    if setting.lower() in {"off", "0", "false", "no"}:
        return None
    return Path(setting) if setting else Path.home() / ".cache" / "llm-surgeon"


def model_files(source: ModelSource) -> list[Path]:
    """The files whose contents determine a local model's outputs.

    A GGUF model is its one file (not its folder, which may hold several); a Hugging Face
    folder is its config and weight files.
    """
    folder = Path(source.path)
    if source.gguf_file:
        return [folder / source.gguf_file]
    return sorted([folder / "config.json", *folder.glob("*.safetensors")])


def model_identity(spec: str) -> list[list] | None:
    """``[path, size, mtime_ns]`` of each file of a local model; ``None`` for a hub model."""
    try:
        source = resolve_model_path(spec)
        if source.kind == "hub":
            return None
        return [[str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns] for f in model_files(source)]
    except (OSError, ConfigError):
        return None


def outputs_identity(spec: str, dtype: str, device: str) -> list | None:
    """What identifies a local model's outputs: its files, the dtype and the device type.

    ``None`` if the model is not a local file or folder (a hub model may change).
    """
    files = model_identity(spec)
    return None if files is None else [files, dtype, device.split(":")[0]]


def key(config: RunConfig, windows: Tensor) -> str | None:
    """Cache key of the dense perplexity, or ``None`` if the model is not a local file/folder.

    The windows ``(n_windows, seqlen)`` enter as their shape and token ids: everything
    that changes them (dataset, data files, split, ``seqlen``, ``windows``, the BOS
    policy, the tokenizer) changes the key; the shape tells apart windows whose token
    streams are equal (64 x 512 and 128 x 256 tokens of one text).
    """
    identity = outputs_identity(config.model, config.dtype, config.device)
    if identity is None:
        return None
    h = hashlib.sha256()
    h.update(json.dumps([identity, list(windows.shape), str(windows.dtype)]).encode())
    h.update(windows.cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def get(cache_key: str | None) -> float | None:
    """The cached perplexity for ``cache_key``, if any."""
    folder = cache_folder()
    if cache_key is None or folder is None:
        return None
    try:
        return float(json.loads((folder / f"ppl-{cache_key}.json").read_text())["ppl"])
    except (OSError, ValueError, KeyError):
        return None


def put(cache_key: str | None, ppl: float) -> None:
    """Remember ``ppl`` under ``cache_key`` (best effort)."""
    folder = cache_folder()
    if cache_key is None or folder is None:
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".ppl-{cache_key}.tmp"
        tmp.write_text(json.dumps({"ppl": ppl}))
        tmp.replace(folder / f"ppl-{cache_key}.json")
    except OSError:
        pass
