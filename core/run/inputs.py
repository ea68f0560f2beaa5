"""What a run reads before pruning: the tokenizer, calibration windows and evaluation windows.

Everything that can be checked without weights is built before they load
(:func:`prepare_inputs`): data too short for the run, a BOS policy the tokenizer cannot
follow, or a model without chat template for chat calibration or fidelity checks fail at
once. Self-generated ``chat`` calibration needs the dense model: the text part of a
mixture is checked first, and the conversations are generated right after the weights
load, before any pruning (:func:`complete_calibration`). They are stored in the run's
work folder at once, so a resumed run reads them back (and builds every window before
loading weights): its calibration windows, and their hash in ``run.json``, are those of
the interrupted run.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import attrs
from torch import Tensor

from llm_surgeon.data.conversations import require_chat_template
from llm_surgeon.data.mixture import CHAT, parse_sources, uses_chat, window_counts
from llm_surgeon.data.windows import calibration_windows, eval_windows
from llm_surgeon.model.loading import load_tokenizer
from llm_surgeon.run import ppl_cache
from llm_surgeon.run.chat import calibration_conversations
from llm_surgeon.run.config import RunConfig
from llm_surgeon.run.output import RunOutput

if TYPE_CHECKING:
    from torch import nn

log = logging.getLogger(__name__)


@attrs.define
class RunInputs:
    """A run's inputs; ``calibration`` is ``None`` until self-generated conversations exist.

    Attributes:
        tokenizer: the model's tokenizer.
        calibration: ``(nsamples, seqlen)`` int64 calibration token ids.
        calibration_info: as from :func:`~llm_surgeon.data.windows.calibration_windows`,
            with ``conversations`` (source, cache, seconds...) for chat calibration.
        windows: ``(n_windows, seqlen)`` evaluation token ids (``None``: no evaluation).
        evaluation_info: the evaluation data's info (``source``, ``bos_token_id``...).
        conversations: the chat calibration records ``{"messages": [...], ...}``.
    """

    tokenizer: Any
    calibration: Tensor | None = None
    calibration_info: dict[str, Any] = attrs.field(factory=dict)
    windows: Tensor | None = None
    evaluation_info: dict[str, Any] = attrs.field(factory=dict)
    conversations: list[dict[str, Any]] | None = None


def prepare_inputs(config: RunConfig, output: RunOutput | None, *, tokenizer: Any = None) -> RunInputs:
    """The tokenizer (loaded unless given) and every window that needs no weights (see the
    module docstring).

    Raises:
        ConfigError: the data is too short, the BOS policy or chat calibration does not
            fit the tokenizer, or the windows differ from those of the run being resumed.
    """
    cal = config.calibration
    if tokenizer is None:
        tokenizer = load_tokenizer(config.model, trust_remote_code=config.trust_remote_code)
    if uses_chat(cal.data.dataset) or config.fidelity.enabled:
        require_chat_template(tokenizer)  # a hub model's template is known only now
    inputs = RunInputs(tokenizer)
    if config.evaluation.enabled:
        inputs.windows = eval_windows(tokenizer, config.evaluation, inputs.evaluation_info)
    if uses_chat(cal.data.dataset):
        if cal.chat.file is not None:
            inputs.conversations, chat_info = calibration_conversations(cal, None, tokenizer, None)
        elif output is not None and (stored := output.conversations()) is not None:
            inputs.conversations = stored
            chat_info = {**output.info.get("conversations", {}), "cache": "work folder (resumed)"}
        else:
            _check_text_part(tokenizer, config)
            return inputs  # the conversations need the weights: complete_calibration
        _windows(inputs, config, output, chat_info)
    else:
        _windows(inputs, config, output, {})
    return inputs


def complete_calibration(inputs: RunInputs, config: RunConfig, model: nn.Module, output: RunOutput | None,
                         totals: dict[str, float], *, progress: bool = True) -> None:
    """Self-generate the chat calibration with the dense ``model`` if still needed, and its windows.

    Generation seconds go to ``totals["generation"]``; the conversations go to the work
    folder before anything else happens.
    """
    if inputs.calibration is not None:
        return
    identity = ppl_cache.outputs_identity(config.model, config.dtype, config.device)
    inputs.conversations, chat_info = calibration_conversations(config.calibration, model, inputs.tokenizer,
                                                                identity, progress=progress)
    if "seconds" in chat_info:  # generated now, not read from the cache
        totals["generation"] = chat_info["seconds"]
    if output is not None:
        output.store_conversations(inputs.conversations)
        output.record(conversations={k: v for k, v in chat_info.items() if k != "seconds"})
    _windows(inputs, config, output, chat_info)


def _windows(inputs: RunInputs, config: RunConfig, output: RunOutput | None, chat_info: dict[str, Any]) -> None:
    """Calibration windows from the known conversations (if any); checked against a resumed run."""
    messages = [r["messages"] for r in inputs.conversations] if inputs.conversations is not None else None
    inputs.calibration, info = calibration_windows(inputs.tokenizer, config.calibration, conversations=messages)
    if chat_info:
        info["conversations"] = {**chat_info, **info.get("conversations", {})}
    if info.get("note"):
        log.warning("%s", info["note"])
    inputs.calibration_info = info
    if output is not None:
        output.check_inputs(inputs.calibration)


def _check_text_part(tokenizer: Any, config: RunConfig) -> None:
    """Build the text windows of a mixture with self-generated chat now, to fail before the weights."""
    cal = config.calibration
    sources = parse_sources(cal.data.dataset)
    for source, count in zip(sources, window_counts(sources, cal.nsamples), strict=True):
        if source.name != CHAT:
            text = attrs.evolve(cal.data, dataset=source.name)
            calibration_windows(tokenizer, attrs.evolve(cal, data=text, nsamples=count))
