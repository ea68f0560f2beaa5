"""Tiny models, sessions and single-layer problems for the layer-wise baseline tests."""

from __future__ import annotations

from types import SimpleNamespace

import torch
from transformers import LlamaConfig, LlamaForCausalLM, OPTConfig, OPTForCausalLM

from llm_surgeon.data import CalibrationConfig
from llm_surgeon.methods import PruningSession
from llm_surgeon.model import ModuleState
from llm_surgeon.plugins.architectures.llama import LlamaAdapter
from llm_surgeon.plugins.architectures.opt import OPTAdapter
from llm_surgeon.pruning import parse_nm
from llm_surgeon.run.config import RunConfig

VOCAB = 64


def tiny_model(kind: str, seed: int = 0):
    """A random tiny Llama or OPT causal LM (2 layers, width 32) and its adapter."""
    torch.manual_seed(seed)
    if kind == "llama":
        config = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64,
                             num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                             max_position_embeddings=64)
        model, adapter = LlamaForCausalLM(config), LlamaAdapter()
    else:
        config = OPTConfig(vocab_size=VOCAB, hidden_size=32, ffn_dim=64, num_hidden_layers=2,
                           num_attention_heads=4, max_position_embeddings=64,
                           word_embed_proj_dim=32)
        model, adapter = OPTForCausalLM(config), OPTAdapter()
    return model.eval(), adapter


def tiny_session(kind: str, structure: str = "element", nsamples: int = 8, seqlen: int = 16,
                 batch_size: int = 4) -> PruningSession:
    """A session on a tiny model with random calibration tokens."""
    model, adapter = tiny_model(kind)
    nm = parse_nm(structure)
    handler = SimpleNamespace(n=nm[0], m=nm[1]) if nm else SimpleNamespace()
    config = RunConfig(model="tiny", structure=structure,
                       calibration=CalibrationConfig(nsamples=nsamples, seqlen=seqlen,
                                                     batch_size=batch_size))
    gen = torch.Generator().manual_seed(1)
    return PruningSession(
        model=model, adapter=adapter,
        states=[ModuleState.dense(pm) for pm in adapter.prunable_modules(model)],
        structure=handler, structure_name="n:m" if nm else "element",
        calibration=torch.randint(0, VOCAB, (nsamples, seqlen), generator=gen),
        config=config, progress=False,
    )


def layer_problem(d_out: int = 24, d_in: int = 48, tokens: int = 400, seed: int = 0):
    """Weights ``(d_out, d_in)`` and correlated inputs ``X: (tokens, d_in)`` with uneven scales."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(d_out, d_in, generator=gen, dtype=torch.float64)
    mix = torch.randn(d_in, d_in, generator=gen, dtype=torch.float64) / d_in**0.5
    mix += torch.eye(d_in, dtype=torch.float64)
    scales = torch.exp(torch.randn(d_in, generator=gen, dtype=torch.float64))
    x = (torch.randn(tokens, d_in, generator=gen, dtype=torch.float64) @ mix) * scales
    return w, x


def reconstruction_error(w: torch.Tensor, w_hat: torch.Tensor, x: torch.Tensor) -> float:
    """``||W Xᵀ - Ŵ Xᵀ||_F`` with ``x: (tokens, d_in)``."""
    return float(torch.linalg.norm((w - w_hat) @ x.T))


def check_masks(session: PruningSession) -> None:
    """Every mask agrees with its module's zeros (masks are the source of truth)."""
    for s in session.states:
        w = s.pm.module.weight.detach()
        assert not bool(w[~s.mask].any()), s.pm.name
