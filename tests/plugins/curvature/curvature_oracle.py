"""Brute-force references for the curvature tests (float64, tiny models only)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
import transformers as tf
from torch import Tensor, nn

from llm_surgeon.model import adapter_for
from llm_surgeon.testing import tiny_model

FAMILIES = ("llama", "llama-bias", "qwen2", "opt", "opt-nobias")


def make_model(family: str, seed: int = 0) -> nn.Module:
    """A tiny float64 model: hidden 16, intermediate 32, 2 layers, 4 heads, vocab 64."""
    if family == "opt-nobias":
        torch.manual_seed(seed)
        config = tf.OPTConfig(vocab_size=64, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                              ffn_dim=32, word_embed_proj_dim=16, max_position_embeddings=64,
                              enable_bias=False)
        return tf.OPTForCausalLM(config).double().eval()
    return tiny_model(family, seed=seed, dtype=torch.float64)


def make_batches(model: nn.Module, n_batches: int = 2, batch: int = 2, seqlen: int = 8,
                 seed: int = 0) -> list[Tensor]:
    """Random token windows ``(batch, seqlen)``."""
    gen = torch.Generator().manual_seed(seed)
    return [torch.randint(0, model.config.vocab_size, (batch, seqlen), generator=gen)
            for _ in range(n_batches)]


def modules_of(model: nn.Module):
    """The prunable modules of ``model`` by its adapter."""
    return adapter_for(model).prunable_modules(model)


def per_token(model: nn.Module, batches: list[Tensor], names: list[str]) -> dict[str, tuple[Tensor, Tensor]]:
    """Per-token ``a: (N, d_in)`` (bias column of ones) and ``g: (N, d_out)`` by plain autograd.

    ``g`` is the gradient of the summed next-token cross-entropy with respect to each
    position's output (``retain_grad``, parameters requiring grad), positions ``0..S-2``.
    """
    mods = dict(model.named_modules())
    out: dict[str, tuple[list, list]] = {n: ([], []) for n in names}
    for batch in batches:
        seen: dict[str, tuple[Tensor, Tensor]] = {}

        def hook(name, seen=seen):
            def fn(module, args, output):
                output.retain_grad()
                seen[name] = (args[0].detach(), output)
            return fn

        handles = [mods[n].register_forward_hook(hook(n)) for n in names]
        try:
            logits = model(input_ids=batch).logits
        finally:
            for h in handles:
                h.remove()
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).double(),
                               batch[:, 1:].reshape(-1), reduction="sum")
        model.zero_grad()
        loss.backward()
        for n in names:
            x, y = seen[n]
            x = x.reshape(*batch.shape, x.shape[-1])  # OPT flattens tokens before its MLP
            dy = y.grad.reshape(*batch.shape, y.shape[-1])
            assert torch.all(dy[:, -1] == 0)  # the last position predicts nothing
            a = x[:, :-1].reshape(-1, x.shape[-1]).double()
            if mods[n].bias is not None:
                a = torch.cat([a, torch.ones(a.shape[0], 1, dtype=a.dtype)], dim=1)
            out[n][0].append(a)
            out[n][1].append(dy[:, :-1].reshape(-1, y.shape[-1]).double())
    model.zero_grad(set_to_none=True)
    return {n: (torch.cat(a), torch.cat(g)) for n, (a, g) in out.items()}


def token_fisher(a: Tensor, g: Tensor) -> Tensor:
    """Dense ``F = 1/N sum_n (g g^T) ⊗ (a a^T)``: ``(d_out*d_in, d_out*d_in)``."""
    j = torch.stack([torch.kron(gn, an) for gn, an in zip(g, a, strict=True)])  # rows vec(g a^T), row-major
    return j.T @ j / a.shape[0]


def rearrange(f: Tensor, d_out: int, d_in: int) -> Tensor:
    """Van Loan-Pitsianis ``R(F)``: ``(d_out^2, d_in^2)`` with ``R(G ⊗ A) = vec(G) vec(A)^T``."""
    return f.reshape(d_out, d_in, d_out, d_in).permute(0, 2, 1, 3).reshape(d_out * d_out, d_in * d_in)


def nearest_kronecker(f: Tensor, d_out: int, d_in: int, rank: int) -> Tensor:
    """Dense best sum of ``rank`` Kronecker products (truncated SVD of ``R(F)``)."""
    u, s, vh = torch.linalg.svd(rearrange(f, d_out, d_in))
    return sum(
        torch.kron(s[r] * u[:, r].reshape(d_out, d_out), vh[r].reshape(d_in, d_in)) for r in range(rank)
    )


def rel_err(x: Tensor, ref: Tensor) -> float:
    """``||x - ref||_F / ||ref||_F``."""
    return float((x - ref).norm() / ref.norm())
