"""The process's random number generators, as data that can be saved and put back.

Covered: torch's CPU generator, every CUDA device's generator (when CUDA is initialised),
Python's :mod:`random` and NumPy's legacy global generator.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from torch import Tensor


def rng_state() -> tuple[dict[str, Tensor], dict[str, Any]]:
    """``(tensors, plain data)`` of every generator's state."""
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda/{i}"] = state
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["numpy"] = torch.from_numpy(np.asarray(keys, dtype=np.uint32).view(np.int32).copy())
    data = {"python": [version, list(internal), gauss],
            "numpy": [kind, int(pos), int(has_gauss), float(cached)]}
    return tensors, data


def set_rng_state(tensors: dict[str, Tensor], data: dict[str, Any]) -> None:
    """Put back what :func:`rng_state` returned."""
    torch.set_rng_state(tensors["torch"])
    cuda = sorted((int(k.split("/")[1]), t) for k, t in tensors.items() if k.startswith("cuda/"))
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([t for _, t in cuda])
    version, internal, gauss = data["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, pos, has_gauss, cached = data["numpy"]
    keys = tensors["numpy"].numpy().view(np.uint32)
    np.random.set_state((kind, keys, pos, has_gauss, cached))
