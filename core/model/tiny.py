"""Tiny random causal LMs of every supported family, for tests and figures."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

#: Model families :func:`tiny_model` can build.
TINY_FAMILIES = ("llama", "llama-bias", "mistral", "qwen2", "opt")


def tiny_model(family: str = "llama", *, seed: int = 0, hidden: int = 16, intermediate: int = 32,
               layers: int = 2, vocab: int = 64, dtype: torch.dtype = torch.float32) -> nn.Module:
    """A tiny random causal LM of ``family`` (one of :data:`TINY_FAMILIES`), in eval mode."""
    import transformers as tf

    torch.manual_seed(seed)
    common: dict[str, Any] = dict(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers,
                                  num_attention_heads=4, max_position_embeddings=64)
    if family in ("llama", "llama-bias"):
        bias = family == "llama-bias"
        config = tf.LlamaConfig(**common, intermediate_size=intermediate, num_key_value_heads=2,
                                attention_bias=bias, mlp_bias=bias)
        model = tf.LlamaForCausalLM(config)
    elif family == "mistral":
        config = tf.MistralConfig(**common, intermediate_size=intermediate, num_key_value_heads=2)
        model = tf.MistralForCausalLM(config)
    elif family == "qwen2":
        config = tf.Qwen2Config(**common, intermediate_size=intermediate, num_key_value_heads=2)
        model = tf.Qwen2ForCausalLM(config)
    elif family == "opt":
        config = tf.OPTConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers,
                              num_attention_heads=4, ffn_dim=intermediate, word_embed_proj_dim=hidden,
                              max_position_embeddings=64)
        model = tf.OPTForCausalLM(config)
    else:
        raise ValueError(f"unknown family {family!r}; choose from {TINY_FAMILIES}")
    return model.to(dtype).eval()


def random_tokens(model: nn.Module, n: int = 4, seqlen: int = 16, *, seed: int = 0) -> torch.Tensor:
    """Random token ids ``(n, seqlen)`` for ``model``'s vocabulary."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, model.config.vocab_size, (n, seqlen), generator=gen)
