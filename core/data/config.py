"""Which text a run calibrates and evaluates on: frozen, validated attrs classes."""

from __future__ import annotations

import attrs
from attrs import validators as v


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
    nsamples: int = attrs.field(default=32, validator=v.ge(1))
    seqlen: int = attrs.field(default=512, validator=v.ge(1))
    batch_size: int = attrs.field(default=1, validator=v.ge(1))
    seed: int = 0


@attrs.frozen
class EvalConfig:
    """Perplexity evaluation on non-overlapping windows of the joined split."""

    data: DataConfig = attrs.field(factory=lambda: DataConfig(split="test"))
    seqlen: int = attrs.field(default=512, validator=v.ge(1))
    windows: int | None = attrs.field(default=None, validator=v.optional(v.ge(1)))
    batch_size: int = attrs.field(default=1, validator=v.ge(1))
    enabled: bool = True
    every_shot: bool = False
