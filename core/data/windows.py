"""Token windows: calibration windows (text, packed conversations, mixtures) and evaluation windows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs
import torch
from torch import Tensor

from llm_surgeon.data.config import CalibrationConfig, DataConfig, EvalConfig
from llm_surgeon.data.conversations import Messages, load_conversations, render, text_ids
from llm_surgeon.data.mixture import CHAT, parse_sources, window_counts
from llm_surgeon.data.text import load_text
from llm_surgeon.errors import ConfigError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


def tokenize(tokenizer: PreTrainedTokenizerBase, text: str) -> Tensor:
    """Token ids of ``text`` tokenised once with the tokenizer's defaults, ``(n_tokens,)``."""
    import transformers

    # The whole split is one long sequence on purpose; silence the length warning.
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        ids = tokenizer(text, return_tensors="pt")["input_ids"]
    finally:
        transformers.logging.set_verbosity(verbosity)
    return ids[0].to(torch.long)


def _text_windows(tokenizer: PreTrainedTokenizerBase, data: DataConfig, n: int, seqlen: int,
                  seed: int) -> tuple[Tensor, dict[str, Any]]:
    """``n`` random windows of a tokenised text split, each starting at a uniform position."""
    text, info = load_text(data)
    if info.get("split_used") != info["split"]:
        info["note"] = f"{info['split']} split not available; calibrating on {info['split_used']}"
    ids = tokenize(tokenizer, text)
    if ids.numel() <= seqlen:
        raise ConfigError(
            f"calibration split has {ids.numel()} tokens, fewer than seqlen + 1 = {seqlen + 1}"
        )
    gen = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, ids.numel() - seqlen, (n,), generator=gen)
    info["tokens"] = ids.numel()
    return torch.stack([ids[s : s + seqlen] for s in starts.tolist()]), info


def _packed_ids(tokenizer: PreTrainedTokenizerBase, messages: Messages) -> list[int]:
    """A rendered conversation followed by EOS, unless the rendering already ends with it."""
    text = render(tokenizer, messages)
    ids = text_ids(tokenizer, text)
    if tokenizer.eos_token is not None and not text.rstrip().endswith(tokenizer.eos_token):
        ids.append(tokenizer.eos_token_id)
    return ids


def conversation_windows(tokenizer: PreTrainedTokenizerBase, conversations: Sequence[Messages], n: int,
                         seqlen: int, seed: int) -> tuple[Tensor, dict[str, Any]]:
    """``n`` packed windows of ``seqlen`` tokens from conversations.

    The conversations, rendered with the model's chat template and put in a seeded
    random order, are concatenated into one token stream, each followed by EOS unless
    its rendering already ends with it. The stream is cut into non-overlapping windows
    and ``n`` of them are drawn at random. Every token is real text (no padding, so no
    attention mask is needed downstream); a window holds the end of one conversation and
    the start of the next, as in pretraining-style packing.

    Returns:
        ``(windows, info)``: ``(n, seqlen)`` int64 token ids, and ``conversations``,
        ``tokens`` (of the stream) and ``windows_available``.

    Raises:
        ConfigError: the conversations give fewer than ``n`` windows.
    """
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(conversations), generator=gen).tolist()
    stream = torch.tensor([t for i in order for t in _packed_ids(tokenizer, conversations[i])],
                          dtype=torch.long)
    available = split_windows(stream, seqlen)
    if available.shape[0] < n:
        raise ConfigError(
            f"{len(conversations)} chat conversations give {stream.numel()} tokens, "
            f"{available.shape[0]} windows of {seqlen}; {n} are needed. Use more or longer "
            "conversations (--chat-prompts, --chat-tokens), fewer windows or a mixture"
        )
    pick = torch.randperm(available.shape[0], generator=gen)[:n]
    info = {"conversations": len(conversations), "tokens": int(stream.numel()),
            "windows_available": int(available.shape[0])}
    return available[pick].clone(), info


def calibration_windows(tokenizer: PreTrainedTokenizerBase, cal: CalibrationConfig,
                        conversations: Sequence[Messages] | None = None) -> tuple[Tensor, dict[str, Any]]:
    """Calibration windows of ``cal.data.dataset``: a text split, ``chat``, or a mixture.

    Text windows start at uniformly random token positions of the tokenised split (they
    may overlap); chat windows are packed conversations (:func:`conversation_windows`).
    A mixture (``wikitext2:0.5,chat:0.5``) takes each source's share of ``cal.nsamples``
    (:func:`llm_surgeon.data.mixture.window_counts`) and shuffles the windows together.
    Everything is reproducible from ``cal.seed``.

    Args:
        tokenizer: the model's tokenizer.
        cal: sources, number of windows and their length, seed.
        conversations: the ``chat`` conversations; ``None`` reads ``cal.chat.file``
            (self-generated conversations come from :mod:`llm_surgeon.run.chat`).

    Returns:
        ``(windows, info)`` with ``windows: (nsamples, seqlen)`` int64 token ids on the CPU
        and ``info``: the text source's info as from :func:`load_text` (with ``tokens``;
        a fallback from train says ``"train split not available; calibrating on
        validation"``), ``sources`` (name, fraction, windows of each), ``nsamples``,
        ``seqlen``, ``seed``, and for chat ``conversations`` (count, tokens, windows available).
    """
    sources = parse_sources(cal.data.dataset)
    counts = window_counts(sources, cal.nsamples)
    parts, info = [], {}
    for source, count in zip(sources, counts, strict=True):
        if source.name == CHAT:
            if conversations is None:
                if cal.chat.file is None:
                    raise ConfigError("self-generated chat calibration needs the dense model; run it "
                                      "through llm_surgeon.prune or give calibration.chat.file")
                conversations = load_conversations(cal.chat.file)
            windows, info["conversations"] = conversation_windows(tokenizer, conversations, count,
                                                                  cal.seqlen, cal.seed)
        else:
            data = attrs.evolve(cal.data, dataset=source.name)
            windows, text_info = _text_windows(tokenizer, data, count, cal.seqlen, cal.seed)
            info.update(text_info)
        parts.append(windows)
    windows = torch.cat(parts)
    if len(parts) > 1:
        windows = windows[torch.randperm(cal.nsamples, generator=torch.Generator().manual_seed(cal.seed))]
    info["sources"] = [{"name": s.name, "fraction": s.fraction, "windows": c}
                       for s, c in zip(sources, counts, strict=True)]
    info.update(nsamples=cal.nsamples, seqlen=cal.seqlen, seed=cal.seed)
    return windows, info


def split_windows(ids: Tensor, seqlen: int, limit: int | None = None) -> Tensor:
    """Cut ``ids: (n_tokens,)`` into non-overlapping windows ``(n_windows, seqlen)``.

    The incomplete tail is dropped; ``limit`` keeps only the first windows.
    """
    n = ids.numel() // seqlen
    if limit is not None:
        n = min(n, limit)
    return ids[: n * seqlen].reshape(n, seqlen)


def eval_windows(tokenizer: PreTrainedTokenizerBase, ev: EvalConfig) -> Tensor:
    """Evaluation windows: the split joined as one string, tokenised once, cut in order.

    Args:
        tokenizer: the model's tokenizer.
        ev: dataset, window length and optional limit on the number of windows.

    Returns:
        ``(n_windows, seqlen)`` int64 token ids on the CPU: the first ``ev.windows``
        (all if ``None``) non-overlapping windows.
    """
    text, _ = load_text(ev.data)
    windows = split_windows(tokenize(tokenizer, text), ev.seqlen, ev.windows)
    if windows.shape[0] == 0:
        raise ConfigError(f"evaluation split is shorter than one window of {ev.seqlen} tokens")
    return windows
