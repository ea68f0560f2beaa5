"""Helpers for testing llm-surgeon and third-party plugins on tiny random models.

Plugin authors can run the same contract checks the built-ins pass::

    from llm_surgeon.testing import tiny_model, check_prune

    model = tiny_model("llama")
    check_prune(model, method="surgeon", curvature="my-curvature", structure="row-col",
                target_size=0.7, shots=2)
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from llm_surgeon.adapters import adapter_for
from llm_surgeon.config import CalibrationConfig, RunConfig, parse_nm
from llm_surgeon.registry import Kind, get_registry
from llm_surgeon.schedule import targets
from llm_surgeon.session import PruningSession
from llm_surgeon.structures import ModuleState, UpdateMode

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


def make_session(model: nn.Module, *, method: str = "surgeon", curvature: str | None = None,
                 structure: str = "row-col", calibration: torch.Tensor | None = None,
                 update: str | None = None, curvature_options: dict | None = None,
                 structure_options: dict | None = None, target_size: float = 0.5,
                 shots: int = 1) -> PruningSession:
    """A :class:`PruningSession` over ``model`` built from registered plugin names."""
    registry = get_registry()
    method_obj = registry.get(Kind.METHOD, method).create()
    structure_options = dict(structure_options or {})
    nm = parse_nm(structure)
    structure_name = "n:m" if nm else structure
    if nm:
        structure_options.update(n=nm[0], m=nm[1])
    structure_rec = registry.get(Kind.STRUCTURE, structure_name)
    structure_obj = structure_rec.create(structure_rec.make_config(**structure_options))
    curvature = curvature or method_obj.default_curvature
    estimator = None
    if curvature is not None:
        rec = registry.get(Kind.CURVATURE, curvature)
        estimator = rec.create(rec.make_config(**(curvature_options or {})))
    if calibration is None:
        calibration = random_tokens(model)
    adapter = adapter_for(model)
    config = RunConfig(model="<in-memory>", method=method, curvature=curvature, structure=structure,
                       target_size=target_size, shots=shots, update=update,
                       calibration=CalibrationConfig(nsamples=len(calibration), seqlen=calibration.shape[1],
                                                     batch_size=2))
    default_update = getattr(method_obj, "default_update", UpdateMode.NONE)
    return PruningSession(
        model=model, adapter=adapter,
        states=[ModuleState.dense(pm) for pm in adapter.prunable_modules(model)],
        structure=structure_obj, structure_name=structure_name, calibration=calibration,
        config=config, method=method_obj, estimator=estimator,
        update=UpdateMode(update) if update else default_update, progress=False,
    )


def run_shots(session: PruningSession) -> list:
    """Run every shot of ``session.config``'s schedule; returns the shot logs."""
    logs = []
    cfg = session.config
    for shot, target in enumerate(targets(cfg.schedule, cfg.shots, cfg.target_size), start=1):
        shot_log = session.method.run_shot(session, shot, target)
        shot_log.achieved = session.nonzero_size()
        logs.append(shot_log)
    return logs


def check_prune(model: nn.Module, **kwargs: Any) -> PruningSession:
    """Prune ``model`` and assert the contract every method/curvature/structure must keep.

    Checks: each shot's size is within one candidate's worth of its target, weights
    outside the masks are exactly zero, the masks only shrink, and the model's outputs
    stay finite.
    """
    session = make_session(model, **kwargs)
    cfg = session.config
    previous = [s.mask.clone() for s in session.states]
    for shot, target in enumerate(targets(cfg.schedule, cfg.shots, cfg.target_size), start=1):
        session.method.run_shot(session, shot, target)
        slack = max(max(s.pm.shape) for s in session.states) / session.total_weights()
        assert abs(session.size() - target) <= slack + 1e-9, (session.size(), target)
        for state, before in zip(session.states, previous, strict=True):
            w = state.pm.module.weight.detach().cpu()
            assert torch.all(w[~state.mask] == 0), f"{state.pm.name}: masked weights are not zero"
            assert not torch.any(state.mask & ~before), f"{state.pm.name}: a removed weight came back"
        previous = [s.mask.clone() for s in session.states]
    with torch.no_grad():
        logits = model(random_tokens(model, 2, 8, seed=1)).logits
    assert torch.isfinite(logits).all(), "non-finite logits after pruning"
    return session
