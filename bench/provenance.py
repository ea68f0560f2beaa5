"""Where a benchmark record comes from: git commit, machine, model size."""

from __future__ import annotations

import functools
import logging
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: The repository root (parent of ``bench/``).
REPO_ROOT = Path(__file__).resolve().parent.parent

_DTYPE_BYTES = {"float32": 4, "float": 4, "float64": 8, "double": 8, "float16": 2, "half": 2,
                "bfloat16": 2}


def _git(*args: str) -> str | None:
    try:
        result = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                                timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip()


def git_info() -> dict[str, Any]:
    """``{"commit": sha or None, "dirty": bool or None}``.

    ``dirty`` is true when tracked files differ from ``HEAD`` (untracked files, such as
    new result records, do not count).
    """
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def machine_info(device: str = "cpu") -> dict[str, Any]:
    """Platform, CPU count, torch threads and the accelerator used (if any)."""
    import torch

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": device,
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["accelerator"] = torch.cuda.get_device_name(torch.device(device))
    return info


def load_average() -> list[float] | None:
    """The system's 1, 5 and 15 minute load averages (``None`` where the OS has none).

    Read when a run ends: a 15-minute load well above the run's own threads means the
    machine was shared, and the record's seconds are pessimistic.
    """
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


@functools.lru_cache(maxsize=16)
def model_parameters(model: str, trust_remote_code: bool = False) -> int | None:
    """Number of distinct parameters of ``model``, counted without loading its weights.

    The model is built on the ``meta`` device from its configuration; tied weights
    count once. Returns ``None`` if the configuration cannot be read.
    """
    try:
        import torch
        from transformers import AutoModelForCausalLM

        from llm_surgeon.model import load_model_config

        config = load_model_config(model, trust_remote_code=trust_remote_code)
        with torch.device("meta"):
            net = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
        return sum(p.numel() for p in net.parameters())
    except Exception as exc:  # provenance is best effort
        log.warning("could not count the parameters of %s: %s", model, exc)
        return None


def model_mb(model: str, dtype: str = "float32", trust_remote_code: bool = False) -> float | None:
    """Size of ``model``'s parameters in MiB at ``dtype``, or ``None`` if unknown."""
    count = model_parameters(model, trust_remote_code)
    if count is None:
        return None
    return count * _DTYPE_BYTES.get(dtype, 4) / 2**20
