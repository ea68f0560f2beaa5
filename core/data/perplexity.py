"""Perplexity on non-overlapping windows (the SparseGPT / LLM Surgeon protocol)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from llm_surgeon.data.loss import next_token_loss
from llm_surgeon.util.progress import progress_bar
from llm_surgeon.util.torch_util import model_device


@torch.no_grad()
def window_losses(
    model: nn.Module,
    windows: Tensor,
    *,
    batch_size: int = 1,
    progress: bool = True,
    desc: str = "perplexity",
) -> Tensor:
    """Mean next-token cross-entropy of each window.

    Args:
        model: a causal LM returning ``logits: (batch, seqlen, vocab)``.
        windows: token ids ``(n_windows, seqlen)``.
        batch_size: windows per forward pass.
        progress: show a progress bar.
        desc: label of the progress bar.

    Returns:
        ``(n_windows,)`` float64: for each window the mean over its ``seqlen - 1``
        positions of ``-log p(x_{t+1} | x_{<=t})``.
    """
    if windows.ndim != 2 or windows.shape[1] < 2:
        raise ValueError(f"windows must be (n_windows, seqlen >= 2), got {tuple(windows.shape)}")
    was_training = model.training
    model.eval()
    device = model_device(model)
    batches = windows.split(batch_size)
    losses = []
    try:
        for batch in progress_bar(batches, total=len(batches), desc=desc, enabled=progress):
            batch = batch.to(device)
            logits = model(input_ids=batch, use_cache=False).logits
            nll = next_token_loss(logits, batch, reduction="none")  # (batch, seqlen - 1)
            losses.append(nll.double().mean(dim=1).cpu())
    finally:
        model.train(was_training)
    return torch.cat(losses)


def perplexity(model: nn.Module, windows: Tensor, *, batch_size: int = 1, progress: bool = True) -> float:
    """``exp`` of the mean over windows of the mean next-token cross-entropy.

    Args:
        model: a causal LM (its device is used for the windows).
        windows: token ids ``(n_windows, seqlen)``, e.g. from
            :func:`llm_surgeon.data.windows.eval_windows`.
        batch_size: windows per forward pass.
        progress: show a progress bar.

    Returns:
        The perplexity (``inf`` if the loss overflows, ``nan`` if it is not finite).
    """
    losses = window_losses(model, windows, batch_size=batch_size, progress=progress)
    return perplexity_of(float(losses.mean()))


def perplexity_of(mean_loss: float) -> float:
    """``exp(mean_loss)``, ``inf`` when it overflows (``nan`` stays ``nan``)."""
    try:
        return math.exp(mean_loss)
    except OverflowError:
        return math.inf
