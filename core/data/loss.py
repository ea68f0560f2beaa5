"""The next-token cross-entropy, written once for evaluation, calibration passes and LoRA."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def next_token_logits(logits: Tensor) -> Tensor:
    """Logits of the positions that predict a next token, flattened and at least float32.

    Args:
        logits: ``(batch, seqlen, vocab)``.

    Returns:
        ``(batch * (seqlen - 1), vocab)``.
    """
    logits = logits[:, :-1].reshape(-1, logits.shape[-1])
    return logits.to(torch.promote_types(logits.dtype, torch.float32))


def next_token_loss(logits: Tensor, ids: Tensor, reduction: str = "mean") -> Tensor:
    """Cross-entropy of predicting ``ids[:, t + 1]`` from position ``t``.

    Args:
        logits: ``(batch, seqlen, vocab)`` (any float dtype; computed in at least float32).
        ids: ``(batch, seqlen)`` token ids.
        reduction: ``mean``, ``sum`` or ``none`` (then ``(batch, seqlen - 1)``).
    """
    loss = F.cross_entropy(next_token_logits(logits), ids[:, 1:].reshape(-1), reduction=reduction)
    return loss.view(ids.shape[0], -1) if reduction == "none" else loss
