"""Tiny random causal LMs of every supported family, for tests and figures."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

#: Model families :func:`tiny_model` can build.
TINY_FAMILIES = ("llama", "llama-bias", "mistral", "qwen2", "opt", "gpt2", "phi3", "gemma3",
                 "gemma3-multimodal")


def tiny_config(family: str = "llama", *, hidden: int = 16, intermediate: int = 32, layers: int = 2,
                vocab: int = 64) -> Any:
    """The transformers config of a tiny ``family`` model (one of :data:`TINY_FAMILIES`).

    Every family has 4 attention heads; those with grouped-query attention have 2
    key/value heads. The Gemma 3 config has what sets Gemma apart: a head dimension
    of 8 (not ``hidden / heads``), one key/value head, a sliding-window layer (window 8)
    before a global one, and a tied embedding.
    """
    import transformers as tf

    common: dict[str, Any] = dict(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers,
                                  num_attention_heads=4, max_position_embeddings=64)
    if family in ("llama", "llama-bias"):
        bias = family == "llama-bias"
        return tf.LlamaConfig(**common, intermediate_size=intermediate, num_key_value_heads=2,
                              attention_bias=bias, mlp_bias=bias)
    if family in ("mistral", "qwen2", "phi3"):
        cls = {"mistral": tf.MistralConfig, "qwen2": tf.Qwen2Config, "phi3": tf.Phi3Config}[family]
        extra = {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2} if family == "phi3" else {}
        return cls(**common, intermediate_size=intermediate, num_key_value_heads=2, **extra)
    if family == "opt":
        return tf.OPTConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers,
                            num_attention_heads=4, ffn_dim=intermediate, word_embed_proj_dim=hidden,
                            max_position_embeddings=64)
    if family == "gpt2":
        return tf.GPT2Config(vocab_size=vocab, n_embd=hidden, n_layer=layers, n_head=4, n_positions=64,
                             n_inner=intermediate, bos_token_id=0, eos_token_id=0)
    if family == "gemma3":
        kinds = ["sliding_attention", "full_attention"]
        return tf.Gemma3TextConfig(**common, intermediate_size=intermediate, num_key_value_heads=1,
                                   head_dim=8, query_pre_attn_scalar=8, sliding_window=8,
                                   layer_types=[kinds[i % 2] for i in range(layers)],
                                   tie_word_embeddings=True)
    if family == "gemma3-multimodal":  # the text decoder above, behind a tiny vision tower
        text = tiny_config("gemma3", hidden=hidden, intermediate=intermediate, layers=layers, vocab=vocab)
        vision = tf.SiglipVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                       num_attention_heads=2, image_size=16, patch_size=8)
        return tf.Gemma3Config(text_config=text.to_dict(), vision_config=vision.to_dict(),
                               mm_tokens_per_image=4, image_token_index=vocab - 1,
                               boi_token_index=vocab - 3, eoi_token_index=vocab - 2)
    raise ValueError(f"unknown family {family!r}; choose from {TINY_FAMILIES}")


def tiny_model(family: str = "llama", *, seed: int = 0, hidden: int = 16, intermediate: int = 32,
               layers: int = 2, vocab: int = 64, dtype: torch.dtype = torch.float32) -> nn.Module:
    """A tiny random causal LM of ``family`` (one of :data:`TINY_FAMILIES`), in eval mode."""
    from transformers import AutoModelForCausalLM

    config = tiny_config(family, hidden=hidden, intermediate=intermediate, layers=layers, vocab=vocab)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    return model.to(dtype).eval()


def random_tokens(model: nn.Module, n: int = 4, seqlen: int = 16, *, seed: int = 0) -> torch.Tensor:
    """Random token ids ``(n, seqlen)`` for ``model``'s vocabulary."""
    gen = torch.Generator().manual_seed(seed)
    vocab = model.get_input_embeddings().num_embeddings
    return torch.randint(0, vocab, (n, seqlen), generator=gen)
