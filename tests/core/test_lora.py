"""LoRA phases between shots: training, absorption into the pruned weights, clean-up."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import llm_surgeon.methods.lora.training as lora
from llm_surgeon.data import CalibrationConfig
from llm_surgeon.errors import ConfigError
from llm_surgeon.methods import LoraSettings, PruningSession, finetune
from llm_surgeon.methods.lora import holdout_split, lm_loss
from llm_surgeon.model import ModuleState, adapter_for
from llm_surgeon.run.config import RunConfig
from llm_surgeon.testing import random_tokens, tiny_model


def _mask(shape: tuple[int, int], kind: str, weight: torch.Tensor, gen: torch.Generator,
          keep: float) -> torch.Tensor:
    d_out, d_in = shape
    if kind == "dense":
        return torch.ones(shape, dtype=torch.bool)
    if kind == "row-col":
        rows = torch.rand(d_out, generator=gen) < keep
        cols = torch.rand(d_in, generator=gen) < keep
        rows[0] = cols[0] = True
        return rows[:, None] & cols[None, :]
    if kind == "element":
        return torch.rand(shape, generator=gen) < 0.5
    if kind == "2:4":  # keep the 2 largest magnitudes of every 4 consecutive inputs
        groups = weight.detach().abs().reshape(d_out, d_in // 4, 4)
        keep = torch.zeros_like(groups, dtype=torch.bool)
        keep.scatter_(2, groups.topk(2, dim=2).indices, True)
        return keep.reshape(shape)
    raise ValueError(kind)


def _session(model: nn.Module, kind: str, calibration: torch.Tensor, *, seed: int = 0,
             keep: float = 0.7) -> PruningSession:
    """A session over ``model`` whose modules are pruned with a random ``kind`` mask."""
    adapter = adapter_for(model)
    gen = torch.Generator().manual_seed(seed)
    states = []
    for pm in adapter.prunable_modules(model):
        state = ModuleState(pm, _mask(pm.shape, kind, pm.module.weight, gen, keep))
        state.apply_mask()
        if pm.has_bias:  # a removed row takes its bias with it
            with torch.no_grad():
                pm.module.bias.mul_(state.mask.any(dim=1).to(pm.module.bias.dtype))
        states.append(state)
    config = RunConfig(model="<tiny>", structure=kind if kind != "dense" else "element",
                       calibration=CalibrationConfig(nsamples=len(calibration), seqlen=calibration.shape[1]))
    return PruningSession(model=model, adapter=adapter, states=states, structure=None, structure_name=kind,
                          calibration=calibration, config=config, progress=False)


def _spy_adapter_logits(monkeypatch, probe: torch.Tensor) -> dict:
    """Record the adapter model's logits on ``probe`` right after training (before the merge)."""
    seen: dict = {}
    real_train = lora._train

    def train_and_record(session, *args, **kwargs):
        losses = real_train(session, *args, **kwargs)
        with torch.no_grad():
            seen["logits"] = session.model(input_ids=probe).logits.clone()
        return losses

    monkeypatch.setattr(lora, "_train", train_and_record)
    return seen


def _weights(session: PruningSession) -> list[torch.Tensor]:
    return [s.pm.module.weight.detach().clone() for s in session.states]


@pytest.mark.parametrize("family", ["llama", "llama-bias", "opt"])
def test_rowcol_merge_keeps_adapter_logits(monkeypatch, family):
    model = tiny_model(family, dtype=torch.float64)
    session = _session(model, "row-col", random_tokens(model, 4, 12))
    probe = random_tokens(model, 3, 12, seed=5)
    seen = _spy_adapter_logits(monkeypatch, probe)
    before = _weights(session)
    masks = [s.mask.clone() for s in session.states]

    out = finetune(session, LoraSettings(enabled=True, rank=4, lr=1e-2), phase="shot1", steps=5)

    with torch.no_grad():
        merged = model(input_ids=probe).logits
    torch.testing.assert_close(merged, seen["logits"], rtol=0, atol=1e-10)
    assert out["merge_logit_change"]["max_abs"] < 1e-10
    assert out["merge_dropped_delta"] == 0.0  # re-applying the mask was a no-op
    changed = 0.0
    for state, w0, mask in zip(session.states, before, masks, strict=True):
        w = state.pm.module.weight.detach()
        assert torch.equal(state.mask, mask)
        assert torch.all(w[~mask] == 0)
        changed += float((w - w0)[mask].abs().max())
    assert changed > 1e-3  # the adapters did change the live weights


@pytest.mark.parametrize("kind", ["element", "2:4"])
def test_element_and_nm_masks_survive_the_merge(monkeypatch, kind):
    model = tiny_model("llama", dtype=torch.float64)
    session = _session(model, kind, random_tokens(model, 4, 12))
    nonzero = [int(s.pm.module.weight.count_nonzero()) for s in session.states]
    calibration_probe = session.calibration[:1]
    seen = _spy_adapter_logits(monkeypatch, calibration_probe)

    out = finetune(session, LoraSettings(enabled=True, rank=4, lr=1e-3), phase="shot1", steps=4)

    for state, nz in zip(session.states, nonzero, strict=True):
        w = state.pm.module.weight.detach()
        assert torch.all(w[~state.mask] == 0)
        assert int(w.count_nonzero()) <= nz  # exactly as sparse as reported
        if kind == "2:4":
            assert int(w.reshape(w.shape[0], -1, 4).ne(0).sum(dim=2).max()) <= 2
    # The reported change is the true change on the probe window (the first calibration
    # window, as there is no holdout), and it is small but not zero.
    with torch.no_grad():
        merged = model(input_ids=calibration_probe).logits
    true_change = float((merged - seen["logits"]).abs().max())
    change = out["merge_logit_change"]
    assert change["max_abs"] == pytest.approx(true_change, rel=1e-9, abs=1e-12)
    assert 0 < change["max_abs"] < 0.05
    assert 0 < change["relative"] < 0.05
    assert 0 < out["merge_dropped_delta"] < 1


def _train_dense(model: nn.Module, data: torch.Tensor, steps: int = 150) -> None:
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        lm_loss(model, data).backward()
        opt.step()
    model.eval()


def test_lora_recovers_calibration_loss_after_damaging_prune():
    torch.manual_seed(0)
    model = tiny_model("llama", hidden=32, intermediate=64)
    # A learnable language that needs attention: each window repeats a random 6-token segment.
    segments = torch.randint(0, model.config.vocab_size, (16, 6), generator=torch.Generator().manual_seed(2))
    data = segments.repeat(1, 4)  # (16, 24)
    _train_dense(model, data)
    with torch.no_grad():
        dense_loss = float(lm_loss(model, data))

    session = _session(model, "row-col", data)
    with torch.no_grad():
        pruned_loss = float(lm_loss(model, data))
    assert pruned_loss > dense_loss + 0.5  # the prune did damage

    out = finetune(session, LoraSettings(enabled=True, rank=8, lr=1e-2), phase="shot1", steps=30)
    with torch.no_grad():
        recovered = float(lm_loss(model, data))
    assert out["steps"] == 30 and len(out["loss"]) == 30
    assert sum(out["loss"][-10:]) < sum(out["loss"][:10])
    assert recovered < pruned_loss - 0.3 * (pruned_loss - dense_loss)
    for state in session.states:
        assert torch.all(state.pm.module.weight[~state.mask] == 0)


def _assert_plain(model: nn.Module, modules: list[nn.Module], flags: list[bool]) -> None:
    assert not model.training
    assert not hasattr(model, "peft_config")
    assert not any("lora" in name for name, _ in model.named_parameters())
    assert not any(type(m).__module__.startswith("peft") for m in model.modules())
    assert [m for _, m in model.named_modules()] == modules
    assert [p.requires_grad for p in model.parameters()] == flags


def test_model_restored_after_success_and_error(monkeypatch):
    model = tiny_model("llama")
    session = _session(model, "element", random_tokens(model, 4, 12))
    # An unusual requires_grad pattern that must survive.
    for i, p in enumerate(model.parameters()):
        p.requires_grad_(i % 3 == 0)
    flags = [p.requires_grad for p in model.parameters()]
    modules = [m for _, m in model.named_modules()]

    finetune(session, LoraSettings(enabled=True, rank=2, lr=1e-3, dropout=0.1), phase="shot1", steps=2)
    _assert_plain(model, modules, flags)
    assert all(model.get_submodule(s.pm.name) is s.pm.module for s in session.states)

    # A failure mid-training leaves the weights exactly as they were, without adapters.
    before = [p.detach().clone() for p in model.parameters()]
    calls = {"n": 0}
    real_loss = lora.lm_loss

    def failing_loss(m, ids):
        calls["n"] += 1
        if calls["n"] > 2:
            raise RuntimeError("boom")
        return real_loss(m, ids)

    monkeypatch.setattr(lora, "lm_loss", failing_loss)
    with pytest.raises(RuntimeError, match="boom"):
        finetune(session, LoraSettings(enabled=True, rank=2, lr=1e-1), phase="shot2", steps=5)
    _assert_plain(model, modules, flags)
    for p, b in zip(model.parameters(), before, strict=True):
        assert torch.equal(p.detach(), b)


def test_failed_injection_leaves_no_adapters(monkeypatch):
    from peft import LoraConfig, inject_adapter_in_model

    model = tiny_model("llama")
    session = _session(model, "row-col", random_tokens(model, 4, 12))
    flags = [p.requires_grad for p in model.parameters()]
    modules = [m for _, m in model.named_modules()]

    def half_inject(model, states, settings):
        inject_adapter_in_model(LoraConfig(r=2, target_modules=[states[0].pm.name]), model)
        raise RuntimeError("injection failed")

    monkeypatch.setattr(lora, "_inject", half_inject)
    with pytest.raises(RuntimeError, match="injection failed"):
        finetune(session, LoraSettings(enabled=True), phase="shot1", steps=1)
    _assert_plain(model, modules, flags)


def test_adapters_start_fresh_each_phase():
    model = tiny_model("llama", dtype=torch.float64)
    session = _session(model, "row-col", random_tokens(model, 4, 12))
    settings = LoraSettings(enabled=True, rank=2, lr=1e-2, batch_size=4)  # every window per step
    first = finetune(session, settings, phase="shot1", steps=3)
    with torch.no_grad():
        merged_loss = float(lm_loss(model, session.calibration))
    second = finetune(session, settings, phase="shot2", steps=3)
    # A fresh adapter (B = 0) leaves the merged model unchanged at the first step.
    assert second["loss"][0] == pytest.approx(merged_loss, rel=1e-9)
    assert merged_loss < first["loss"][0]
    assert second["trainable_params"] == first["trainable_params"] > 0


def test_holdout_split_and_report():
    calibration = torch.arange(40).reshape(10, 4)
    train, hold = holdout_split(calibration, LoraSettings(holdout=0.2, fraction=0.5))
    assert hold.tolist() == calibration[8:].tolist()
    assert train.tolist() == calibration[:4].tolist()
    train, hold = holdout_split(calibration, LoraSettings())
    assert train.shape[0] == 10 and hold.shape[0] == 0

    model = tiny_model("llama", dtype=torch.float64)
    session = _session(model, "row-col", random_tokens(model, 4, 12))
    probe = session.calibration[-1:]
    with torch.no_grad():
        ppl_before = float(lm_loss(model, probe).exp())
    out = finetune(session, LoraSettings(enabled=True, rank=2, lr=1e-2, holdout=0.25), phase="final", steps=3)
    with torch.no_grad():
        ppl_after = float(lm_loss(model, probe).exp())
    assert out["train_windows"] == 3 and out["holdout_windows"] == 1
    assert out["holdout_ppl_before"] == pytest.approx(ppl_before, rel=1e-6)
    assert out["holdout_ppl_after"] == pytest.approx(ppl_after, rel=1e-6)
    assert ppl_after != ppl_before


def test_roles_limit_the_adapters_and_steps_zero_is_a_no_op():
    model = tiny_model("llama")
    session = _session(model, "row-col", random_tokens(model, 4, 12))
    before = _weights(session)
    out = finetune(session, LoraSettings(enabled=True), phase="shot1", steps=0)
    assert out["steps"] == 0 and out["loss"] == []
    assert all(torch.equal(w, s.pm.module.weight) for w, s in zip(before, session.states, strict=True))

    out = finetune(session, LoraSettings(enabled=True, rank=2, lr=1e-2, roles=("up", "down")),
                   phase="shot1", steps=2)
    assert out["modules"] == 2 * model.config.num_hidden_layers
    for w, s in zip(before, session.states, strict=True):
        assert torch.equal(w, s.pm.module.weight) == (s.pm.role not in ("up", "down"))

    with pytest.raises(ConfigError, match="fc1"):
        finetune(session, LoraSettings(enabled=True, roles=("fc1",)), phase="shot2", steps=1)
