"""Which text a run calibrates and evaluates on: frozen, validated attrs classes."""

from __future__ import annotations

import attrs
from attrs import validators as v


@attrs.frozen
class DataConfig:
    """A text dataset split.

    Attributes:
        dataset: ``wikitext2`` or ``text`` (local text files given by ``data_dir``). For
            calibration also ``chat`` or a mixture such as ``wikitext2:0.5,chat:0.5``
            (fractions of the calibration windows; :mod:`llm_surgeon.data.mixture`).
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
class ChatConfig:
    """Conversations for ``chat`` calibration, rendered with the model's chat template.

    Attributes:
        file: a local JSONL file of conversations (``{"messages": [{"role", "content"}...]}``
            per line); ``None`` self-generates them: the dense model answers the seed prompts.
        prompts: JSONL of seed prompts (same format, ending with a user turn); ``None``
            uses the bundled ones (320, ``llm_surgeon/data/chat/seed_prompts.jsonl``).
        max_prompts: answer only the first N seed prompts (``None``: all).
        max_new_tokens: longest generated answer, in tokens.
        temperature, top_p: sampling of the answers (seeded by the calibration seed).
        batch_size: prompts per generation batch.
    """

    file: str | None = None
    prompts: str | None = None
    max_prompts: int | None = attrs.field(default=None, validator=v.optional(v.ge(1)))
    max_new_tokens: int = attrs.field(default=128, validator=v.ge(1))
    temperature: float = attrs.field(default=0.7, validator=v.gt(0.0))
    top_p: float = attrs.field(default=0.9, validator=[v.gt(0.0), v.le(1.0)])
    batch_size: int = attrs.field(default=16, validator=v.ge(1))


@attrs.frozen
class CalibrationConfig:
    """Calibration windows: ``nsamples`` windows of ``seqlen`` tokens from ``data.dataset``.

    ``bos`` (one of :data:`BOS_POLICIES`): whether each text window starts with the BOS
    token (chat windows are rendered conversations, which carry the template's own BOS).
    """

    data: DataConfig = attrs.field(factory=lambda: DataConfig(split="train"))
    nsamples: int = attrs.field(default=32, validator=v.ge(1))
    seqlen: int = attrs.field(default=512, validator=v.ge(1))
    batch_size: int = attrs.field(default=1, validator=v.ge(1))
    seed: int = 0
    bos: str = attrs.field(default="auto", validator=v.in_(BOS_POLICIES))
    chat: ChatConfig = attrs.field(factory=ChatConfig)


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
class FidelityConfig:
    """Agreement with the dense model on held-out chat prompts, and the question set.

    Attributes:
        enabled: measure after pruning (``prune --fidelity``).
        prompts: use the first N held-out prompts (``None``: all 64 bundled ones).
        response_tokens: N, the length of the dense greedy responses the pruned model is
            compared along (KL divergence and greedy-token match).
        questions: use the first N questions (``None``: all 80 bundled ones).
        answer_tokens: longest greedy answer to a question, in tokens.
        batch_size: prompts per generation batch.
    """

    enabled: bool = False
    prompts: int | None = attrs.field(default=None, validator=v.optional(v.ge(1)))
    response_tokens: int = attrs.field(default=32, validator=v.ge(1))
    questions: int | None = attrs.field(default=None, validator=v.optional(v.ge(1)))
    answer_tokens: int = attrs.field(default=32, validator=v.ge(1))
    batch_size: int = attrs.field(default=16, validator=v.ge(1))


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
