"""Checks of a local model folder's weight files, before (or without) reading the weights."""

from __future__ import annotations

from pathlib import Path

from llm_surgeon.errors import ConfigError


def check_no_pickles(folder: Path) -> None:
    """Refuse a folder whose only weights are pickles (unpickling can run arbitrary code).

    Raises:
        ConfigError: no safetensors file, but ``*.bin``/``*.pt``/``*.pth`` ones.
    """
    if any(folder.glob("*.safetensors")):
        return
    if any(folder.glob("*.bin")) or any(folder.glob("*.pt")) or any(folder.glob("*.pth")):
        raise ConfigError(
            f"{folder} only has pickled weights (*.bin); llm-surgeon loads safetensors only, "
            "since unpickling can run arbitrary code. Convert the checkpoint to safetensors "
            "in an environment you trust first."
        )


def check_weight_files(folder: Path) -> None:
    """Read the header of every safetensors file in ``folder`` (cheap: no weights are read).

    safetensors checks that the header is whole and that the data it describes covers
    the file exactly, so a truncated, corrupt or empty file is found here.

    Raises:
        ConfigError: naming the first broken file.
    """
    from safetensors import SafetensorError, safe_open

    for path in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(path, framework="pt"):
                pass
        except (SafetensorError, OSError) as exc:
            raise ConfigError(f"model file {str(path)!r} is truncated or corrupt: {exc}") from None
