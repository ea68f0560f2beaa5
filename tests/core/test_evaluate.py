"""Perplexity against a token-by-token float64 computation."""

from __future__ import annotations

import math

import pytest
import torch

from llm_surgeon.data import perplexity, window_losses
from llm_surgeon.util.progress import progress_bar


def _manual_perplexity(model, windows):
    """exp(mean over windows of mean over positions of -log p(next token)), in float64."""
    model = model.double()
    per_window = []
    with torch.no_grad():
        for w in windows:
            logits = model(input_ids=w[None]).logits[0].double()
            logp = torch.log_softmax(logits, dim=-1)
            nll = [-logp[t, w[t + 1]].item() for t in range(len(w) - 1)]
            per_window.append(sum(nll) / len(nll))
    model.float()
    return math.exp(sum(per_window) / len(per_window))


@pytest.mark.parametrize("model_type", ["llama", "opt"])
def test_perplexity_matches_manual_computation(make_tiny_model, model_type):
    model = make_tiny_model(model_type, seed=1)
    gen = torch.Generator().manual_seed(0)
    windows = torch.randint(0, model.config.vocab_size, (3, 12), generator=gen)
    expected = _manual_perplexity(model, windows)
    got = perplexity(model, windows, progress=False)
    assert got == pytest.approx(expected, rel=1e-5)
    # Batching does not change the result.
    assert perplexity(model, windows, batch_size=2, progress=False) == pytest.approx(expected, rel=1e-5)
    # A random tiny model is close to uniform over the vocabulary.
    assert 0.5 * model.config.vocab_size < got < 2 * model.config.vocab_size


def test_window_losses_shape_and_training_mode_restored(make_tiny_model):
    model = make_tiny_model("llama").train()
    windows = torch.randint(0, model.config.vocab_size, (4, 8))
    losses = window_losses(model, windows, batch_size=3, progress=False)
    assert losses.shape == (4,) and losses.dtype == torch.float64
    assert model.training


def test_window_losses_rejects_bad_shapes(make_tiny_model):
    with pytest.raises(ValueError):
        window_losses(make_tiny_model("llama"), torch.zeros(5, dtype=torch.long), progress=False)


@pytest.mark.parametrize("enabled", [True, False])
def test_progress_bar_yields_every_item(enabled):
    assert list(progress_bar(range(5), desc="x", enabled=enabled)) == [0, 1, 2, 3, 4]
