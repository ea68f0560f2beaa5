"""Pruning runs on randomly initialised models: memory and time at a model's widths, no weights.

A simulated run's ``model`` is a folder with only a ``config.json`` (``bench/configs/``).
:func:`random_model` builds that architecture with random weights (seeded),
:func:`random_calibration` draws uniformly random token ids, and :func:`prune_random`
runs :func:`llm_surgeon.run.runner.prune` on them (evaluation must be off: random
weights have no meaningful perplexity). Used by the ``scale`` profile and by
``bench/device_check.sh`` where the real model cannot travel.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn


def random_model(spec: str, *, dtype: str = "float32", seed: int = 0, layers: int | None = None) -> nn.Module:
    """The causal LM of ``spec``'s configuration with random weights, in eval mode.

    Args:
        spec: anything :func:`llm_surgeon.model.loading.load_model_config` reads (a folder
            with ``config.json``, a GGUF file, an alias); only the configuration is read.
        dtype: dtype of the weights.
        seed: seed of the initialisation.
        layers: keep only this many decoder layers (``None``: the configuration's).
    """
    from transformers import AutoModelForCausalLM

    from llm_surgeon.model.loading import load_model_config
    from llm_surgeon.util.torch_util import torch_dtype

    config = load_model_config(spec)
    if layers is not None:
        config.num_hidden_layers = layers
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch_dtype(dtype))
    return model.eval()


def random_calibration(vocab_size: int, nsamples: int, seqlen: int, seed: int = 0) -> Tensor:
    """Uniformly random token ids ``(nsamples, seqlen)``."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab_size, (nsamples, seqlen), generator=gen)


def prune_random(config: Any, *, progress: bool = True) -> dict[str, Any]:
    """:func:`llm_surgeon.run.runner.prune` of ``config`` on a random model and random tokens.

    Args:
        config: a :class:`~llm_surgeon.run.config.RunConfig` whose ``model`` has a
            configuration only and whose evaluation is off.
        progress: show progress bars.

    Returns:
        The run's report, with ``simulated: true``.
    """
    from llm_surgeon.errors import ConfigError
    from llm_surgeon.run.runner import prune

    if config.evaluation.enabled:
        raise ConfigError("a run on random weights needs evaluation switched off")
    model = random_model(config.model, dtype=config.dtype, seed=config.seed)
    cal = config.calibration
    tokens = random_calibration(model.config.vocab_size, cal.nsamples, cal.seqlen, seed=cal.seed)
    report = prune(config, model=model, calibration=tokens, progress=progress)
    report["simulated"] = True
    return report
