"""Recipe files: a run written down as YAML or TOML.

A recipe holds the fields of :class:`~llm_surgeon.run.config.RunConfig` (the same layout
as the ``config.json`` a run writes), with nested tables for ``calibration``,
``evaluation`` and ``lora``. For convenience ``sparsity`` (fraction removed) may be
given instead of ``target_size``. Example (YAML)::

    model: smollm2-135m
    method: surgeon
    structure: row-col
    target_size: 0.7
    shots: 3
    calibration: {nsamples: 32, seqlen: 512, data: {data_dir: data/wikitext-2-raw}}
    evaluation: {windows: 16}

Command-line flags override recipe values (:func:`merge`).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from llm_surgeon.errors import ConfigError
from llm_surgeon.run.config import RunConfig


def _parse(path: Path, text: str) -> Any:
    if path.suffix.lower() == ".toml":
        import tomllib

        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"recipe {str(path)!r} is not valid TOML: {exc}") from None
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"recipe {str(path)!r} is not valid YAML: {exc}") from None


def normalize(data: Mapping[str, Any]) -> dict[str, Any]:
    """Turn recipe conveniences into :class:`RunConfig` fields (``sparsity`` -> ``target_size``)."""
    data = copy.deepcopy(dict(data))
    if "sparsity" in data:
        if "target_size" in data:
            raise ConfigError("give either target_size or sparsity, not both")
        sparsity = data.pop("sparsity")
        if not isinstance(sparsity, (int, float)) or not 0.0 <= sparsity < 1.0:
            raise ConfigError(f"sparsity must be in [0, 1), got {sparsity!r}")
        data["target_size"] = 1.0 - float(sparsity)
    return data


def load_recipe(path: str | Path) -> dict[str, Any]:
    """Read a YAML (``.yaml``/``.yml``) or TOML (``.toml``) recipe as a plain dict.

    Args:
        path: the recipe file.

    Returns:
        The recipe's values, normalised (see :func:`normalize`), not yet validated.

    Raises:
        ConfigError: the file is missing, unparsable, or not a mapping.
    """
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read recipe {str(path)!r}: {exc.strerror or exc}") from None
    data = _parse(path, text)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"recipe {str(path)!r} must be a mapping of settings, got {type(data).__name__}")
    return normalize(data)


def merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge ``overrides`` into ``base`` (nested mappings merge; other values replace)."""
    out = copy.deepcopy(dict(base))
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def with_defaults(data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` merged over the defaults of every field, so partial sections keep defaults.

    Without this a recipe's ``calibration: {data: {data_dir: X}}`` would rebuild
    ``DataConfig`` with its generic default split instead of calibration's ``train``.
    """
    base = RunConfig(model="_").to_dict()
    base.pop("model")
    return merge(base, data)


def config_from_data(data: Mapping[str, Any]) -> RunConfig:
    """A :class:`RunConfig` from recipe-shaped data (partial sections keep their defaults)."""
    return RunConfig.from_dict(with_defaults(data))


def config_from_recipe(path: str | Path, overrides: Mapping[str, Any] | None = None) -> RunConfig:
    """A :class:`RunConfig` from a recipe file, with ``overrides`` applied on top."""
    return config_from_data(merge(load_recipe(path), normalize(overrides or {})))
