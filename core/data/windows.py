"""Token windows: random calibration windows and in-order evaluation windows of a split."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from llm_surgeon.data.config import CalibrationConfig, EvalConfig
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


def calibration_windows(tokenizer: PreTrainedTokenizerBase, cal: CalibrationConfig) -> tuple[Tensor, dict[str, Any]]:
    """Random windows of the calibration split, reproducible from ``cal.seed``.

    Each window starts at a uniformly random token position of the tokenised
    split (windows may overlap).

    Args:
        tokenizer: the model's tokenizer.
        cal: dataset, number of windows and their length, seed.

    Returns:
        ``(windows, info)`` with ``windows: (nsamples, seqlen)`` int64 token ids on the
        CPU and ``info`` as from :func:`load_text` plus ``tokens``, ``nsamples``,
        ``seqlen``, ``seed``. A fallback from train says
        ``"train split not available; calibrating on validation"``.
    """
    text, info = load_text(cal.data)
    if info.get("split_used") != info["split"]:
        info["note"] = f"{info['split']} split not available; calibrating on {info['split_used']}"
    ids = tokenize(tokenizer, text)
    if ids.numel() <= cal.seqlen:
        raise ConfigError(
            f"calibration data {info['source']} has {ids.numel()} tokens, fewer than "
            f"seqlen + 1 = {cal.seqlen + 1}: give more text or a smaller --seqlen"
        )
    gen = torch.Generator().manual_seed(cal.seed)
    starts = torch.randint(0, ids.numel() - cal.seqlen, (cal.nsamples,), generator=gen)
    windows = torch.stack([ids[s : s + cal.seqlen] for s in starts.tolist()])
    info.update(tokens=ids.numel(), nsamples=cal.nsamples, seqlen=cal.seqlen, seed=cal.seed)
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
    text, info = load_text(ev.data)
    windows = split_windows(tokenize(tokenizer, text), ev.seqlen, ev.windows)
    if windows.shape[0] == 0:
        raise ConfigError(f"evaluation data {info['source']} is shorter than one window of "
                          f"{ev.seqlen} tokens")
    return windows
