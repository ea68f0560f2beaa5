"""Conversations: the bundled chat data, ``messages`` JSONL files, chat templates, windows.

A conversation is a list of messages ``{"role": ..., "content": ...}``, stored one per
line of a JSONL file as ``{"messages": [...]}`` (other fields such as ``id`` are kept
but not needed). Conversations are rendered with the model's own chat template
(``tokenizer.apply_chat_template``) and tokenised without adding special tokens (the
template writes them).

How conversations become calibration windows: :func:`llm_surgeon.data.windows.conversation_windows`.
"""

from __future__ import annotations

import json
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llm_surgeon.errors import ConfigError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

Messages = list[dict[str, str]]

#: Bundled files (``llm_surgeon/data/chat/``): calibration seed prompts, held-out
#: prompts for agreement with the dense model, short questions with reference answers.
SEED_PROMPTS, HELDOUT_PROMPTS, QUESTIONS = "seed_prompts.jsonl", "heldout_prompts.jsonl", "questions.jsonl"


def bundled(name: str) -> Traversable:
    """A bundled chat data file (one of :data:`SEED_PROMPTS`, :data:`HELDOUT_PROMPTS`, :data:`QUESTIONS`)."""
    return resources.files("llm_surgeon.data").joinpath("chat", name)


def read_jsonl(source: str | Path | Traversable) -> list[dict[str, Any]]:
    """The JSON objects of a JSONL file (blank lines skipped).

    Raises:
        ConfigError: the file cannot be read, or a line is not a JSON object.
    """
    path = Path(source).expanduser() if isinstance(source, str) else source
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {str(source)!r}: {exc.strerror or exc}") from None
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise ConfigError(f"{source}:{n}: not valid JSON ({exc})") from None
        if not isinstance(row, dict):
            raise ConfigError(f"{source}:{n}: expected a JSON object, got {type(row).__name__}")
        rows.append(row)
    return rows


def _check_messages(messages: Any, where: str) -> Messages:
    if not isinstance(messages, list) or not messages:
        raise ConfigError(f"{where}: 'messages' must be a non-empty list")
    for m in messages:
        if not (isinstance(m, dict) and isinstance(m.get("role"), str)
                and isinstance(m.get("content"), str)):
            raise ConfigError(f"{where}: every message needs a string 'role' and 'content', got {m!r}")
    return messages


def load_conversations(source: str | Path | Traversable, *, prompts: bool = False) -> list[Messages]:
    """The conversations of a ``messages`` JSONL file.

    Args:
        source: the file.
        prompts: the conversations are prompts to answer: each must end with a user turn.

    Raises:
        ConfigError: naming the file and line of the first malformed record.
    """
    rows = read_jsonl(source)
    if not rows:
        raise ConfigError(f"{source}: no conversations")
    conversations = []
    for n, row in enumerate(rows, 1):
        messages = _check_messages(row.get("messages"), f"{source}: record {n}")
        if prompts and messages[-1]["role"] != "user":
            raise ConfigError(f"{source}: record {n}: a prompt must end with a user message")
        conversations.append(messages)
    return conversations


def require_chat_template(tokenizer: PreTrainedTokenizerBase) -> None:
    """Raise a :class:`ConfigError` if the tokenizer has no chat template."""
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError(
            "the model's tokenizer has no chat template: chat calibration and fidelity "
            "checks render conversations with the model's own template, so they need a chat "
            "or instruct model (calibrate a base model on text, e.g. --data wikitext2)"
        )


def render(tokenizer: PreTrainedTokenizerBase, messages: Messages, *,
           add_generation_prompt: bool = False) -> str:
    """A conversation as text, through the model's chat template.

    Args:
        tokenizer: the model's tokenizer (with a chat template).
        messages: the conversation.
        add_generation_prompt: append the start of an assistant turn (to generate a reply).

    Raises:
        ConfigError: the tokenizer has no chat template, or the template rejects the
            conversation (e.g. one that requires alternating roles).
    """
    require_chat_template(tokenizer)
    from jinja2 import TemplateError

    try:
        return tokenizer.apply_chat_template(messages, tokenize=False,
                                             add_generation_prompt=add_generation_prompt)
    except TemplateError as exc:
        raise ConfigError(f"the chat template rejected a conversation: {exc}") from None


def render_ids(tokenizer: PreTrainedTokenizerBase, messages: Messages, *,
               add_generation_prompt: bool = False) -> list[int]:
    """Token ids of :func:`render` (the template writes the special tokens)."""
    return text_ids(tokenizer, render(tokenizer, messages, add_generation_prompt=add_generation_prompt))


def text_ids(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    """Token ids of rendered text, without the tokenizer adding special tokens."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])
