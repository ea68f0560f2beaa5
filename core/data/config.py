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


#: How windows begin: ``auto`` with the tokenizer's BOS token when the tokenizer puts
#: one in front of a text (Gemma), else with no prefix (SmolLM2); ``always``; ``never``.
BOS_POLICIES = ("auto", "always", "never")


@attrs.frozen
class CalibrationConfig:
    """Calibration windows: ``nsamples`` random windows of ``seqlen`` tokens.

    ``bos`` (one of :data:`BOS_POLICIES`): whether each window starts with the BOS token.
    """

    data: DataConfig = attrs.field(factory=lambda: DataConfig(split="train"))
    nsamples: int = attrs.field(default=32, validator=v.ge(1))
    seqlen: int = attrs.field(default=512, validator=v.ge(1))
    batch_size: int = attrs.field(default=1, validator=v.ge(1))
    seed: int = 0
    bos: str = attrs.field(default="auto", validator=v.in_(BOS_POLICIES))


@attrs.frozen
class EvalConfig:
    """Perplexity evaluation on non-overlapping windows of the joined split.

    ``bos`` (one of :data:`BOS_POLICIES`): whether each window starts with the BOS token.
    """

    data: DataConfig = attrs.field(factory=lambda: DataConfig(split="test"))
    seqlen: int = attrs.field(default=512, validator=v.ge(1))
    windows: int | None = attrs.field(default=None, validator=v.optional(v.ge(1)))
    batch_size: int = attrs.field(default=1, validator=v.ge(1))
    enabled: bool = True
    every_shot: bool = False
    bos: str = attrs.field(default="auto", validator=v.in_(BOS_POLICIES))


@attrs.frozen
class TasksConfig:
    """Downstream evaluation with lm-evaluation-harness (optional ``eval`` extra).

    Attributes:
        tasks: lm-eval task, group or tag names (empty: no downstream evaluation).
        tasks_dir: a folder of local task YAMLs (with local data files) to add to lm-eval's.
        limit: evaluate at most this many documents per task (``None``: all).
        num_fewshot: few-shot examples per prompt.
        batch_size: lm-eval batch size.
    """

    tasks: list[str] = attrs.field(factory=list)
    tasks_dir: str | None = None
    limit: int | None = attrs.field(default=None, validator=v.optional(v.ge(1)))
    num_fewshot: int = attrs.field(default=0, validator=v.ge(0))
    batch_size: int = attrs.field(default=1, validator=v.ge(1))
