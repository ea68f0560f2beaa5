"""Run configuration: frozen, validated attrs classes.

Everything a run needs is described here, so that a recipe file, the CLI and the
Python API all produce the same object, and invalid values fail before any model
is loaded (:func:`llm_surgeon.validate.validate_run`).
"""

from __future__ import annotations

import re
from enum import Enum
from typing import Any

import attrs
from attrs import validators as v

from llm_surgeon.errors import ConfigError


class FisherType(str, Enum):
    """Where the labels of the Fisher come from."""

    EMPIRICAL = "empirical"  #: labels from the data
    SAMPLED = "sampled"  #: labels sampled from the model's predictive distribution


def _fraction(instance: Any, attribute: attrs.Attribute, value: float) -> None:
    if not (0.0 < value <= 1.0):
        raise ConfigError(f"{attribute.name} must be in (0, 1], got {value}")


def _positive(instance: Any, attribute: attrs.Attribute, value: int | None) -> None:
    if value is not None and value < 1:
        raise ConfigError(f"{attribute.name} must be >= 1, got {value}")


_NM = re.compile(r"^(\d+):(\d+)$")


def parse_nm(structure: str) -> tuple[int, int] | None:
    """``(n, m)`` for a structure written ``N:M`` (e.g. ``2:4``), else ``None``."""
    m = _NM.match(structure)
    return (int(m.group(1)), int(m.group(2))) if m else None


def _structure(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    nm = parse_nm(value)
    if nm is not None and not (0 < nm[0] < nm[1]):
        raise ConfigError(f"N:M structure needs 0 < N < M, got {value!r}")


@attrs.frozen
class DataConfig:
    """A text dataset split.

    Attributes:
        dataset: ``wikitext2`` or ``text`` (local text files given by ``data_dir``/``files``).
        data_dir: local folder with ``wiki.{train,valid,test}.raw``; ``None`` uses the hub.
        split: ``train``, ``validation`` or ``test``.
    """

    dataset: str = "wikitext2"
    data_dir: str | None = None
    split: str = "test"


@attrs.frozen
class CalibrationConfig:
    """Calibration windows: ``nsamples`` random windows of ``seqlen`` tokens."""

    data: DataConfig = attrs.field(factory=lambda: DataConfig(split="train"))
    nsamples: int = attrs.field(default=32, validator=_positive)
    seqlen: int = attrs.field(default=512, validator=_positive)
    batch_size: int = attrs.field(default=1, validator=_positive)
    seed: int = 0


@attrs.frozen
class EvalConfig:
    """Perplexity evaluation on non-overlapping windows of the joined split."""

    data: DataConfig = attrs.field(factory=lambda: DataConfig(split="test"))
    seqlen: int = attrs.field(default=512, validator=_positive)
    windows: int | None = attrs.field(default=None, validator=_positive)
    batch_size: int = attrs.field(default=1, validator=_positive)
    enabled: bool = True
    every_shot: bool = False


@attrs.frozen
class LoraSettings:
    """First-order corrections: LoRA fine-tuning after each shot, merged into the weights.

    Attributes:
        enabled: run LoRA phases at all.
        rank, alpha, dropout: adapter shape (peft ``LoraConfig``).
        lr: AdamW learning rate.
        steps_per_shot: optimiser steps after each shot (batches of calibration windows).
        fraction: fraction of the calibration windows used for training.
        holdout: fraction of calibration windows held out to report their perplexity.
        roles: module roles that get adapters (``None``: every prunable role).
        final_steps: optimiser steps of the final phase after the last shot.
        batch_size: calibration windows per optimiser step.

    Defaults were chosen on SmolLM2-135M (README, "First-order corrections"): after a
    damaging prune, 30 steps at lr 1e-3 brought held-out perplexity from 443 to 40,
    lr 3e-4 to 74 and lr 1e-4 to 166; rank 16 was no better than rank 8.
    """

    enabled: bool = False
    rank: int = attrs.field(default=8, validator=_positive)
    alpha: float = 16.0
    dropout: float = 0.0
    lr: float = attrs.field(default=1e-3, validator=v.gt(0.0))
    steps_per_shot: int = attrs.field(default=30, validator=v.ge(0))
    fraction: float = attrs.field(default=1.0, validator=_fraction)
    holdout: float = attrs.field(default=0.0, validator=[v.ge(0.0), v.lt(1.0)])
    roles: tuple[str, ...] | None = attrs.field(default=None, converter=lambda x: None if x is None else tuple(x))
    final_steps: int = attrs.field(default=0, validator=v.ge(0))
    batch_size: int = attrs.field(default=1, validator=_positive)


@attrs.frozen
class RunConfig:
    """One pruning run.

    Attributes:
        model: a local folder, a GGUF file, a hub id, or an alias (``smollm2-135m``).
        method: registered method name.
        curvature: registered curvature name; ``None`` uses the method's default.
        structure: ``row-col``, ``element``, ``N:M`` (e.g. ``2:4``) or another registered one.
        target_size: fraction of prunable weights kept at the end, in (0, 1].
        shots: number of shots.
        schedule: ``linear`` (target sizes interpolated from dense to final).
        method_options, curvature_options, structure_options: plugin options.
        damping_g, damping_a: relative damping of the output factor ``G`` and of the
            input factor ``A``; ``None`` uses the structure's default (README, "Damping").
        update: ``full`` or ``none`` (``None``: the method's default).
        device: ``cpu``, ``cuda``, ``cuda:1``...
        dtype: model dtype during pruning (``float32``, ``bfloat16``...).
        curvature_device: where curvature factors live (``None``: same as ``device``).
        out: output folder; ``None`` writes nothing.
        save_model: whether to save the pruned model in ``out``.
        trust_remote_code: passed to transformers when loading.
    """

    model: str
    method: str = "surgeon"
    curvature: str | None = None
    structure: str = "row-col"
    target_size: float = attrs.field(default=0.8, validator=_fraction)
    shots: int = attrs.field(default=5, validator=_positive)
    schedule: str = "linear"
    method_options: dict[str, Any] = attrs.field(factory=dict)
    curvature_options: dict[str, Any] = attrs.field(factory=dict)
    structure_options: dict[str, Any] = attrs.field(factory=dict)
    damping_g: float | None = attrs.field(default=None, validator=v.optional(v.ge(0.0)))
    damping_a: float | None = attrs.field(default=None, validator=v.optional(v.ge(0.0)))
    update: str | None = attrs.field(default=None, validator=v.optional(v.in_(["full", "none"])))
    calibration: CalibrationConfig = attrs.field(factory=CalibrationConfig)
    evaluation: EvalConfig = attrs.field(factory=EvalConfig)
    lora: LoraSettings = attrs.field(factory=LoraSettings)
    device: str = "cpu"
    dtype: str = "float32"
    curvature_device: str | None = None
    out: str | None = None
    save_model: bool = True
    trust_remote_code: bool = False
    seed: int = 0

    def __attrs_post_init__(self) -> None:
        _structure(self, attrs.fields(RunConfig).structure, self.structure)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (for ``config.json`` / recipes)."""
        return attrs.asdict(self, value_serializer=lambda _i, _a, x: x.value if isinstance(x, Enum) else x)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        data = dict(data)
        try:
            if "calibration" in data and isinstance(data["calibration"], dict):
                cal = dict(data["calibration"])
                if isinstance(cal.get("data"), dict):
                    cal["data"] = DataConfig(**cal["data"])
                data["calibration"] = CalibrationConfig(**cal)
            if "evaluation" in data and isinstance(data["evaluation"], dict):
                ev = dict(data["evaluation"])
                if isinstance(ev.get("data"), dict):
                    ev["data"] = DataConfig(**ev["data"])
                data["evaluation"] = EvalConfig(**ev)
            if "lora" in data and isinstance(data["lora"], dict):
                data["lora"] = LoraSettings(**data["lora"])
            return cls(**data)
        except TypeError as exc:
            raise ConfigError(f"invalid run configuration: {exc}") from exc
