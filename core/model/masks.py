"""Masks of a pruned model in one compact file: ``masks.safetensors``, one bit per weight.

Each prunable module's ``(d_out, d_in)`` keep/remove mask is flattened in row-major order
and packed eight to a byte (``numpy.packbits``, big-endian bit order), stored as a
``uint8`` tensor under the module's qualified name; the shapes are in the file's
metadata. SmolLM2-135M's 106 M prunable weights take 13 MB.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from llm_surgeon.errors import ConfigError

#: File name of the masks in a run's output folder.
MASKS_FILE = "masks.safetensors"
_FORMAT = "llm-surgeon-masks-v1"


def pack_mask(mask: Tensor) -> Tensor:
    """A bool mask of any shape as packed bits: ``(ceil(numel / 8),)`` uint8."""
    bits = mask.detach().cpu().to(torch.bool).flatten().numpy()
    return torch.from_numpy(np.packbits(bits))


def unpack_mask(packed: Tensor, shape: Iterable[int]) -> Tensor:
    """Inverse of :func:`pack_mask`: the bool mask of ``shape``."""
    shape = tuple(int(d) for d in shape)
    count = int(np.prod(shape))
    bits = np.unpackbits(packed.cpu().numpy(), count=count)
    return torch.from_numpy(bits.astype(bool)).reshape(shape)


def save_masks(masks: Mapping[str, Tensor], path: str | Path) -> Path:
    """Write ``{module name: bool mask (d_out, d_in)}`` to ``path`` (safetensors)."""
    from safetensors.torch import save_file

    shapes = {name: list(mask.shape) for name, mask in masks.items()}
    save_file({name: pack_mask(mask) for name, mask in masks.items()}, str(path),
              metadata={"format": _FORMAT, "shapes": json.dumps(shapes)})
    return Path(path)


def load_masks(path: str | Path) -> dict[str, Tensor]:
    """Read a :func:`save_masks` file: ``{module name: bool mask (d_out, d_in)}``.

    ``path`` may be the file or a run's output folder holding it.

    Raises:
        ConfigError: the file is missing or not a masks file.
    """
    from safetensors import safe_open

    path = Path(path)
    if path.is_dir():
        path = path / MASKS_FILE
    if not path.is_file():
        raise ConfigError(f"no masks file at {str(path)!r} (runs write {MASKS_FILE} into --out)")
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
        if metadata.get("format") != _FORMAT:
            raise ConfigError(f"{str(path)!r} is not an llm-surgeon masks file")
        shapes = json.loads(metadata["shapes"])
        return {name: unpack_mask(f.get_tensor(name), shapes[name]) for name in shapes}
