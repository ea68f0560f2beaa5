"""First-order corrections: short LoRA fine-tunes between shots, absorbed into the weights.

The LLM Surgeon (van der Ouderaa et al., ICLR 2024, Sec. 3.6 / Alg. 1) optionally
interleaves its second-order shots with first-order corrections: after each shot a few
optimiser steps of LoRA (Hu et al., 2022) on the calibration data, merged into the
weights before the next shot, so that the sum of many low-rank updates can reach a high
rank, and optionally a final LoRA phase.

:func:`finetune` runs one such phase on a :class:`~llm_surgeon.methods.session.PruningSession`:

1. wraps the prunable Linears of the chosen roles with fresh ``peft`` LoRA adapters,
   constrained to the live rows and columns of each module's mask
   (:mod:`llm_surgeon.methods.lora.masking`);
2. trains them with AdamW on next-token cross-entropy over the training part of the
   calibration windows, optionally reporting the perplexity of held-out windows before
   and after so that overfitting shows;
3. absorbs them: merges ``scaling * B @ A`` into ``W``, re-applies every module's mask
   (a no-op for row-col masks; for element and N:M masks it drops part of the update,
   whose effect on the logits is measured and returned) and removes the adapters, so the
   model is a plain Hugging Face model again, exactly as sparse as reported.

``peft`` provides the adapter layers, their initialisation (``A`` Kaiming-uniform,
``B = 0``, so a fresh adapter changes nothing), the merge and the unwrapping; only the
live-row/column constraint and the mask re-application are ours.
"""

from __future__ import annotations

import logging
import math
import time
import zlib
from typing import Any

import torch
from torch import Tensor, nn

from llm_surgeon.data.loss import next_token_loss
from llm_surgeon.data.perplexity import window_losses
from llm_surgeon.errors import ConfigError, NumericalError
from llm_surgeon.methods.lora.masking import LiveConstraint, dropped_delta_fraction
from llm_surgeon.methods.lora.settings import LoraSettings
from llm_surgeon.methods.session import PruningSession
from llm_surgeon.model.state import ModuleState
from llm_surgeon.util.progress import progress_bar

log = logging.getLogger(__name__)

_ADAPTER = "surgeon"
#: Global gradient-norm clip of the adapter parameters.
_CLIP_NORM = 1.0


def holdout_split(calibration: Tensor, settings: LoraSettings) -> tuple[Tensor, Tensor]:
    """Training and held-out calibration windows.

    The last ``holdout`` fraction of the windows (at least one if ``holdout > 0``) is held
    out; of the rest, the first ``fraction`` (at least one) is used for training.

    Args:
        calibration: ``(n, seqlen)`` token ids.
        settings: the LoRA settings.

    Returns:
        ``(train, holdout)``: ``(n_train, seqlen)`` and ``(n_holdout, seqlen)`` token ids.
    """
    n = calibration.shape[0]
    n_hold = 0
    if settings.holdout > 0:
        if n < 2:
            raise ConfigError("LoRA holdout needs at least 2 calibration windows")
        n_hold = min(max(1, round(settings.holdout * n)), n - 1)
    pool = n - n_hold
    n_train = min(pool, max(1, round(settings.fraction * pool)))
    return calibration[:n_train], calibration[pool:]


def select_states(session: PruningSession, roles: tuple[str, ...] | None) -> list[ModuleState]:
    """States of the modules that get adapters (``roles=None``: all of them)."""
    if roles is None:
        return list(session.states)
    known = sorted({s.pm.role for s in session.states})
    unknown = sorted(set(roles) - set(known))
    if unknown:
        raise ConfigError(f"unknown LoRA role(s) {unknown}; this model has roles {known}")
    return [s for s in session.states if s.pm.role in roles]


def lm_loss(model: nn.Module, ids: Tensor) -> Tensor:
    """Mean next-token cross-entropy of ``model`` on ``ids: (batch, seqlen)`` (at least float32)."""
    return next_token_loss(model(input_ids=ids, use_cache=False).logits, ids)


def window_perplexity(model: nn.Module, windows: Tensor) -> float | None:
    """Perplexity of ``windows: (n, seqlen)`` as :func:`llm_surgeon.data.perplexity.perplexity` (``None`` if n = 0)."""
    if windows.shape[0] == 0:
        return None
    return math.exp(float(window_losses(model, windows, progress=False).mean()))


def finetune(session: PruningSession, settings: LoraSettings, *, phase: str, steps: int) -> dict:
    """One LoRA phase on ``session.model``, absorbed into the pruned weights.

    Args:
        session: the run; its model is changed in place, its masks are not.
        settings: adapter shape, learning rate, data split, roles.
        phase: label of the phase (``shot3``, ``final``); also seeds the window order.
        steps: number of AdamW steps (each on ``settings.batch_size`` training windows).

    Returns:
        The phase log: ``phase``, ``steps``, ``loss`` (training loss before each step),
        ``seconds``, ``holdout_ppl_before`` / ``holdout_ppl_after`` (``None`` without a
        holdout), ``merge_logit_change`` (``{"max_abs", "relative"}``: logits of the merged,
        re-masked model minus those of the adapter model on one window; ``relative`` is
        the ratio of Frobenius norms), ``merge_dropped_delta`` (relative norm of the
        merged update zeroed by the masks), ``seconds_train`` (the optimiser steps alone),
        ``train_windows``, ``holdout_windows``, ``modules`` and ``trainable_params``.

    The model is left in eval mode with every parameter's ``requires_grad`` as found and
    no adapter layers, also when an error is raised (then without merging anything).
    """
    start = time.perf_counter()
    model = session.model
    device = session.device
    train, holdout = holdout_split(session.calibration, settings)
    states = select_states(session, settings.roles)
    result: dict[str, Any] = {
        "phase": phase, "steps": 0, "loss": [], "seconds": 0.0,
        "holdout_ppl_before": None, "holdout_ppl_after": None,
        "merge_logit_change": None, "merge_dropped_delta": None,
        "train_windows": int(train.shape[0]), "holdout_windows": int(holdout.shape[0]),
        "modules": len(states), "trainable_params": 0, "seconds_train": 0.0,
    }
    if steps <= 0 or not states:
        result["seconds"] = time.perf_counter() - start
        return result

    flags = [(p, p.requires_grad) for p in model.parameters()]
    seed = _phase_seed(session, phase)
    model.eval()
    tuner = None
    constraints: list[LiveConstraint] = []
    try:
        result["holdout_ppl_before"] = window_perplexity(model, holdout)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # peft draws A from the global generator
            tuner, layers = _inject(model, states, settings)
        constraints = [
            LiveConstraint.attach(s, layer.lora_A[_ADAPTER].weight, layer.lora_B[_ADAPTER].weight)
            for s, layer in zip(states, layers, strict=True)
        ]
        result["trainable_params"] = sum(c.a.numel() + c.b.numel() for c in constraints)
        train_start = time.perf_counter()
        result["loss"] = _train(session, settings, layers, constraints, train, seed, phase, steps)
        result["steps"] = len(result["loss"])
        result["seconds_train"] = time.perf_counter() - train_start

        probe = (holdout if holdout.shape[0] else train)[:1].to(device)
        result.update(_merge(session, tuner, states, layers, constraints, probe))
        tuner = None
        result["holdout_ppl_after"] = window_perplexity(model, holdout)
    finally:
        for c in constraints:
            c.remove()
        if tuner is not None:  # failed before the merge finished: drop the adapters
            tuner.unload()
            for state in session.states:
                state.apply_mask()
        _strip_adapters(model)  # anything a failed injection left behind
        for p, flag in flags:
            p.requires_grad_(flag)
        model.eval()
    result["seconds"] = time.perf_counter() - start
    log.info(
        "LoRA %s: %d steps, loss %.4f -> %.4f, holdout ppl %s -> %s, merge logit change %s (%.1f s)",
        phase, result["steps"], result["loss"][0], result["loss"][-1],
        _fmt(result["holdout_ppl_before"]), _fmt(result["holdout_ppl_after"]),
        _fmt(result["merge_logit_change"]["max_abs"]), result["seconds"],
    )
    return result


def _merge(session: PruningSession, tuner: Any, states: list[ModuleState], layers: list,
           constraints: list[LiveConstraint], probe: Tensor) -> dict[str, Any]:
    """Merge the adapters into the weights and re-apply every mask; what the merge changed.

    Args:
        probe: ``(1, seqlen)`` token ids whose logits are compared before and after.

    Returns:
        ``merge_dropped_delta`` and ``merge_logit_change`` of :func:`finetune`'s log.
        ``constraints`` is emptied (their hooks are removed).
    """
    model = session.model
    with torch.no_grad():
        adapter_logits = model(input_ids=probe, use_cache=False).logits
        # peft gives a Conv1D's delta in its stored (d_in, d_out) layout; masks are (d_out, d_in).
        deltas = [(s, layer.get_delta_weight(_ADAPTER)) for s, layer in zip(states, layers, strict=True)]
        dropped = dropped_delta_fraction([(s, d.t() if s.pm.transposed else d) for s, d in deltas])
    for c in constraints:
        c.remove()
    constraints.clear()
    tuner.merge_and_unload()
    for state in session.states:
        state.apply_mask()
    with torch.no_grad():
        diff = model(input_ids=probe, use_cache=False).logits.sub_(adapter_logits)
        norm = torch.linalg.vector_norm(adapter_logits, dtype=torch.float64).clamp_min(1e-30)
        change = {
            "max_abs": float(diff.abs().max()),
            "relative": float(torch.linalg.vector_norm(diff, dtype=torch.float64) / norm),
        }
    return {"merge_dropped_delta": dropped, "merge_logit_change": change}


def _phase_seed(session: PruningSession, phase: str) -> int:
    """Seed of a phase's adapter initialisation and window order."""
    return (session.config.seed * 1_000_003 + zlib.crc32(phase.encode())) % 2**63


def _strip_adapters(model: nn.Module) -> bool:
    """Replace any peft layer left in ``model`` by its base layer; ``True`` if one was found."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    found = False
    for name, module in list(model.named_modules()):
        if isinstance(module, BaseTunerLayer) and name:
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            if getattr(parent, child, None) is module:
                setattr(parent, child, module.get_base_layer())
                found = True
    if hasattr(model, "peft_config"):
        del model.peft_config
    return found


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4g}"


def _inject(model: nn.Module, states: list[ModuleState], settings: LoraSettings) -> tuple[Any, list]:
    """Wrap the Linears of ``states`` with fresh peft LoRA layers (in place).

    Returns:
        The peft ``LoraModel`` tuner (for merging/unloading) and the LoRA layer of each
        state, in the order of ``states``.
    """
    from peft import LoraConfig
    from peft.tuners.lora import LoraModel

    config = LoraConfig(
        r=settings.rank, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
        target_modules=[s.pm.name for s in states], bias="none",
    )
    tuner = LoraModel(model, config, _ADAPTER)
    layers = []
    try:
        for s in states:
            layer = model.get_submodule(s.pm.name)
            if getattr(layer, "get_base_layer", None) is None or layer.get_base_layer() is not s.pm.module:
                raise RuntimeError(f"peft did not wrap {s.pm.name} as expected")
            layers.append(layer)
    except BaseException:
        tuner.unload()
        raise
    return tuner, layers


def _train(session: PruningSession, settings: LoraSettings, layers: list, constraints: list[LiveConstraint],
           train: Tensor, seed: int, phase: str, steps: int) -> list[float]:
    """``steps`` AdamW steps on batches of ``train: (n, seqlen)``; returns each step's loss.

    Windows are drawn without replacement in a ``seed``-ed random order, reshuffled
    after each pass; the loss of a step is the one its gradient was taken from.
    """
    model = session.model
    device = session.device
    params = [p for c in constraints for p in (c.a, c.b)]
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed)
    order: list[int] = []
    for layer in layers:
        layer.lora_dropout.train()
    losses: list[float] = []
    try:
        for _ in progress_bar(range(steps), desc=f"LoRA {phase}", enabled=session.progress):
            batch = []
            while len(batch) < min(settings.batch_size, train.shape[0]):
                if not order:
                    order = torch.randperm(train.shape[0], generator=generator).tolist()
                batch.append(order.pop())
            ids = train[batch].to(device)
            loss = lm_loss(model, ids)
            if not torch.isfinite(loss):
                raise NumericalError(f"LoRA {phase}: non-finite loss at step {len(losses)}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, _CLIP_NORM)
            optimizer.step()
            for c in constraints:
                c.enforce()
            losses.append(float(loss.detach()))
            log.debug("LoRA %s step %d: loss %.4f", phase, len(losses), losses[-1])
    finally:
        for layer in layers:
            layer.lora_dropout.eval()
    return losses
