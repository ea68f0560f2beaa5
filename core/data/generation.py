"""Batched generation of replies to chat prompts: sampled (self-generated calibration) or greedy.

Prompts are left-padded into batches and answered with transformers' ``generate``.
Sampling is seeded per batch (from ``seed`` and the batch index) inside a forked RNG,
so the same prompts, seed and batch size give the same replies, and the caller's
random state is untouched.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import attrs
import torch
from torch import Tensor, nn

from llm_surgeon.data.config import ChatConfig
from llm_surgeon.data.conversations import Messages, render_ids
from llm_surgeon.util.progress import progress_bar
from llm_surgeon.util.torch_util import model_device

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


@attrs.frozen
class Decoding:
    """How replies are decoded.

    Attributes:
        max_new_tokens: longest reply, in tokens.
        sample: sample (``True``) or take the most likely token (greedy).
        temperature, top_p: sampling settings (ignored when greedy).
        seed: seeds the sampling of every batch.
        batch_size: prompts per ``generate`` call.
    """

    max_new_tokens: int
    sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    batch_size: int = 8


def _left_padded(prompts: Sequence[Sequence[int]], pad: int) -> tuple[Tensor, Tensor]:
    """``(input_ids, attention_mask)``, both ``(len(prompts), longest)``, padded on the left."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):] = torch.tensor(list(p), dtype=torch.long)
        mask[i, width - len(p):] = 1
    return ids, mask


def _until_eos(tokens: list[int], eos: int | None) -> list[int]:
    """``tokens`` up to and including the first EOS."""
    if eos is not None and eos in tokens:
        return tokens[: tokens.index(eos) + 1]
    return tokens


def _generation_config(decoding: Decoding, pad: int, eos: int | None):
    from transformers import GenerationConfig

    if decoding.sample:
        return GenerationConfig(max_new_tokens=decoding.max_new_tokens, do_sample=True,
                                temperature=decoding.temperature, top_p=decoding.top_p, top_k=0,
                                pad_token_id=pad, eos_token_id=eos)
    return GenerationConfig(max_new_tokens=decoding.max_new_tokens, do_sample=False,
                            pad_token_id=pad, eos_token_id=eos)


@torch.no_grad()
def generate_replies(model: nn.Module, tokenizer: PreTrainedTokenizerBase,
                     prompts: Sequence[Sequence[int]], decoding: Decoding, *,
                     progress: bool = True, desc: str = "generating") -> list[list[int]]:
    """The model's reply to each prompt, as token ids.

    Args:
        model: a causal LM.
        tokenizer: its tokenizer (EOS ends a reply; PAD, else EOS, pads batches).
        prompts: token ids of each prompt (e.g. rendered with a generation prompt).
        decoding: length, greedy or sampled, seed, batch size.
        progress: show a progress bar over the batches.
        desc: label of the progress bar.

    Returns:
        Per prompt, the generated token ids up to and including the first EOS (at most
        ``decoding.max_new_tokens``).
    """
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    config = _generation_config(decoding, pad, eos)
    device = model_device(model)
    starts = range(0, len(prompts), decoding.batch_size)
    replies: list[list[int]] = []
    was_training = model.training
    model.eval()
    try:
        for b, start in enumerate(progress_bar(starts, total=len(starts), desc=desc, enabled=progress)):
            ids, mask = _left_padded(prompts[start : start + decoding.batch_size], pad)
            with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
                torch.manual_seed(decoding.seed * 1_000_003 + b)
                out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device),
                                     generation_config=config)
            replies += [_until_eos(row.tolist(), eos) for row in out[:, ids.shape[1]:].cpu()]
    finally:
        model.train(was_training)
    return replies


def self_generate(model: nn.Module, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[Messages],
                  chat: ChatConfig, seed: int, *, progress: bool = True) -> list[dict]:
    """Conversations in which the model answers each prompt by sampling (seeded).

    Args:
        model: the dense model.
        tokenizer: its tokenizer, with a chat template.
        prompts: conversations ending with a user turn.
        chat: answer length, temperature, top-p, batch size.
        seed: the sampling seed.
        progress: show a progress bar.

    Returns:
        Per prompt ``{"messages": prompt + [assistant reply], "finished": bool}``;
        ``finished`` says whether the reply ended with EOS before ``chat.max_new_tokens``.
    """
    ids = [render_ids(tokenizer, p, add_generation_prompt=True) for p in prompts]
    decoding = Decoding(max_new_tokens=chat.max_new_tokens, sample=True, temperature=chat.temperature,
                        top_p=chat.top_p, seed=seed, batch_size=chat.batch_size)
    replies = generate_replies(model, tokenizer, ids, decoding, progress=progress,
                               desc="self-generating calibration chats")
    eos = tokenizer.eos_token_id
    return [{"messages": [*p, {"role": "assistant",
                               "content": tokenizer.decode(r, skip_special_tokens=True).strip()}],
             "finished": bool(r) and r[-1] == eos}
            for p, r in zip(prompts, replies, strict=True)]
