"""Token windows: calibration windows (text, packed conversations, mixtures) and evaluation windows.

A text split is tokenised once as one string. Windows of ``seqlen`` tokens are cut from
that stream. Models whose tokenizer puts a BOS token in front of every text (Gemma)
expect one at the start of their input: their windows are ``[BOS] + seqlen - 1`` stream
tokens (the ``bos`` policy ``auto``, the default, or ``always``), so that every stream
token is still predicted exactly once in evaluation. Gemma 3 270M's perplexity on the
first 64 WikiText-2 test windows is 2.7x lower that way. Tokenizers that add no BOS
(SmolLM2) get plain windows under ``auto``.

Chat conversations are rendered with the model's template, which writes its own BOS
(tokenised without the tokenizer adding another): a packed chat window that starts at a
conversation starts with that BOS, and only the others get the policy's prefix, so no
window begins with two BOS tokens (:func:`conversation_windows`).
"""

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


def window_bos(tokenizer: PreTrainedTokenizerBase, policy: str = "auto") -> int | None:
    """The token id every window starts with under ``policy``, or ``None`` for no prefix.

    Args:
        tokenizer: the model's tokenizer.
        policy: ``auto`` (the BOS token if the tokenizer puts it in front of a text),
            ``always`` or ``never``.

    Raises:
        ConfigError: ``always`` with a tokenizer that has no BOS token.
    """
    bos = getattr(tokenizer, "bos_token_id", None)
    if policy == "never":
        return None
    if policy == "always":
        if bos is None:
            raise ConfigError("bos 'always' asked for, but the tokenizer has no BOS token")
        return int(bos)
    if bos is None:
        return None
    ids = tokenizer("a")["input_ids"]
    return int(bos) if ids and ids[0] == bos else None


def _stream(tokenizer: PreTrainedTokenizerBase, text: str, bos: int | None) -> Tensor:
    """The split's token ids with the tokenizer's own leading BOS removed when windows get one."""
    ids = tokenize(tokenizer, text)
    if bos is not None and ids.numel() > 0 and int(ids[0]) == bos:
        ids = ids[1:]
    return ids


def _with_bos(chunks: Tensor, bos: int | None) -> Tensor:
    """``chunks: (n, L)`` -> ``(n, L + 1)`` with ``bos`` in front (unchanged if ``None``)."""
    if bos is None:
        return chunks
    return torch.cat([torch.full((chunks.shape[0], 1), bos, dtype=chunks.dtype), chunks], dim=1)


def _text_windows(tokenizer: PreTrainedTokenizerBase, data: DataConfig, n: int, seqlen: int,
                  seed: int, bos: int | None) -> tuple[Tensor, dict[str, Any]]:
    """``n`` random windows of a tokenised text split, each starting at a uniform position."""
    text, info = load_text(data)
    if info.get("split_used") != info["split"]:
        info["note"] = f"{info['split']} split not available; calibrating on {info['split_used']}"
    ids = _stream(tokenizer, text, bos)
    length = seqlen - (bos is not None)  # stream tokens per window
    if ids.numel() <= length or length < 1:
        raise ConfigError(
            f"calibration data {info['source']} has {ids.numel()} tokens, fewer than "
            f"seqlen + 1 = {seqlen + 1}: give more text or a smaller --seqlen"
        )
    gen = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, ids.numel() - length, (n,), generator=gen)
    info["tokens"] = ids.numel()
    return _with_bos(torch.stack([ids[s : s + length] for s in starts.tolist()]), bos), info


def _packed_ids(tokenizer: PreTrainedTokenizerBase, messages: Messages) -> list[int]:
    """A rendered conversation followed by EOS, unless the rendering already ends with it."""
    text = render(tokenizer, messages)
    ids = text_ids(tokenizer, text)
    if tokenizer.eos_token is not None and not text.rstrip().endswith(tokenizer.eos_token):
        ids.append(tokenizer.eos_token_id)
    return ids


def _bos_windows(stream: Tensor, seqlen: int, bos: int) -> Tensor:
    """``stream`` cut in order into windows ``(n, seqlen)`` that each start with one ``bos``.

    A window whose stream tokens start with ``bos`` (a conversation's own) is ``seqlen``
    stream tokens; any other is ``bos`` + ``seqlen - 1`` stream tokens. Every stream
    token is in one window at most; the incomplete tail is dropped.
    """
    rows, pos, values = [], 0, stream.tolist()
    while True:
        own = pos < len(values) and values[pos] == bos
        take = seqlen if own else seqlen - 1
        if pos + take > len(values):
            break
        rows.append(values[pos : pos + take] if own else [bos, *values[pos : pos + take]])
        pos += take
    return torch.tensor(rows, dtype=torch.long).reshape(len(rows), seqlen)


def conversation_windows(tokenizer: PreTrainedTokenizerBase, conversations: Sequence[Messages], n: int,
                         seqlen: int, seed: int, bos: int | None = None) -> tuple[Tensor, dict[str, Any]]:
    """``n`` packed windows of ``seqlen`` tokens from conversations.

    The conversations, rendered with the model's chat template and put in a seeded
    random order, are concatenated into one token stream, each followed by EOS unless
    its rendering already ends with it. The stream is cut into non-overlapping windows
    and ``n`` of them are drawn at random. Every token is real text (no padding, so no
    attention mask is needed downstream); a window holds the end of one conversation and
    the start of the next, as in pretraining-style packing. With a ``bos`` prefix
    (:func:`window_bos`) every window starts with exactly one BOS: the conversation's own
    (written by the template) where a window starts at one, else the prefix.

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
    if bos is not None and seqlen < 2:
        raise ConfigError("windows that start with a BOS token need seqlen >= 2")
    available = split_windows(stream, seqlen) if bos is None else _bos_windows(stream, seqlen, bos)
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
    Every window starts with the BOS token when ``cal.bos`` says so (:func:`window_bos`).
    Everything is reproducible from ``cal.seed``.

    Args:
        tokenizer: the model's tokenizer.
        cal: sources, number of windows and their length, seed, BOS policy.
        conversations: the ``chat`` conversations; ``None`` reads ``cal.chat.file``
            (self-generated conversations come from :mod:`llm_surgeon.run.chat`).

    Returns:
        ``(windows, info)`` with ``windows: (nsamples, seqlen)`` int64 token ids on the CPU
        and ``info``: the text source's info as from :func:`load_text` (with ``tokens``;
        a fallback from train says ``"train split not available; calibrating on
        validation"``), ``sources`` (name, fraction, windows of each), ``nsamples``, ``seqlen``, ``seed``,
        ``bos_token_id`` (the prefix of every window, or ``None``), and for chat
        ``conversations`` (count, tokens, windows available).
    """
    sources = parse_sources(cal.data.dataset)
    counts = window_counts(sources, cal.nsamples)
    bos = window_bos(tokenizer, cal.bos)
    parts, info = [], {}
    for source, count in zip(sources, counts, strict=True):
        if source.name == CHAT:
            if conversations is None:
                if cal.chat.file is None:
                    raise ConfigError("self-generated chat calibration needs the dense model; run it "
                                      "through llm_surgeon.prune or give calibration.chat.file")
                conversations = load_conversations(cal.chat.file)
            windows, info["conversations"] = conversation_windows(tokenizer, conversations, count,
                                                                  cal.seqlen, cal.seed, bos)
        else:
            data = attrs.evolve(cal.data, dataset=source.name)
            windows, text_info = _text_windows(tokenizer, data, count, cal.seqlen, cal.seed, bos)
            info.update(text_info)
        parts.append(windows)
    windows = torch.cat(parts)
    if len(parts) > 1:
        windows = windows[torch.randperm(cal.nsamples, generator=torch.Generator().manual_seed(cal.seed))]
    info["sources"] = [{"name": s.name, "fraction": s.fraction, "windows": c}
                       for s, c in zip(sources, counts, strict=True)]
    info.update(nsamples=cal.nsamples, seqlen=cal.seqlen, seed=cal.seed, bos_token_id=bos)
    return windows, info


def split_windows(ids: Tensor, seqlen: int, limit: int | None = None) -> Tensor:
    """Cut ``ids: (n_tokens,)`` into non-overlapping windows ``(n_windows, seqlen)``.

    The incomplete tail is dropped; ``limit`` keeps only the first windows.
    """
    n = ids.numel() // seqlen
    if limit is not None:
        n = min(n, limit)
    return ids[: n * seqlen].reshape(n, seqlen)


def eval_windows(tokenizer: PreTrainedTokenizerBase, ev: EvalConfig,
                 info: dict[str, Any] | None = None) -> Tensor:
    """Evaluation windows: the split joined as one string, tokenised once, cut in order.

    Args:
        tokenizer: the model's tokenizer.
        ev: dataset, window length and optional limit on the number of windows.
        info: if given, updated with :func:`load_text`'s info (``source``...) and
            ``bos_token_id``.

    Returns:
        ``(n_windows, seqlen)`` int64 token ids on the CPU: the first ``ev.windows``
        (all if ``None``) non-overlapping windows, each ``[BOS] + seqlen - 1`` stream
        tokens when :func:`window_bos` gives a prefix.
    """
    text, text_info = load_text(ev.data)
    bos = window_bos(tokenizer, ev.bos)
    if info is not None:
        info.update(text_info, bos_token_id=bos)
    if bos is not None and ev.seqlen < 2:
        raise ConfigError("windows that start with a BOS token need seqlen >= 2")
    chunks = split_windows(_stream(tokenizer, text, bos), ev.seqlen - (bos is not None), ev.windows)
    windows = _with_bos(chunks, bos)
    if windows.shape[0] == 0:
        raise ConfigError(f"evaluation data {text_info['source']} is shorter than one window of "
                          f"{ev.seqlen} tokens")
    return windows
