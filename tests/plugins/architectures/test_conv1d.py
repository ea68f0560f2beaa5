"""GPT-2's Conv1D modules prune exactly like the nn.Linear modules they equal (float64).

A twin of a tiny GPT-2 has each ``Conv1D`` (weight ``(d_in, d_out)``) replaced by an
``nn.Linear`` with the transposed weight. Both see the same ``theta = [W | b]``,
the same curvature, and prune to the same masks and weights.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from llm_surgeon.model import ModuleState, adapter_for
from llm_surgeon.testing import check_prune, make_session, random_tokens, tiny_model


def _linear_twin(model: nn.Module) -> nn.Module:
    from transformers.pytorch_utils import Conv1D

    twin = copy.deepcopy(model)
    for name, module in list(twin.named_modules()):
        if isinstance(module, Conv1D):
            d_in, d_out = module.weight.shape
            linear = nn.Linear(d_in, d_out, dtype=module.weight.dtype)
            with torch.no_grad():
                linear.weight.copy_(module.weight.t())
                linear.bias.copy_(module.bias)
            parent, _, child = name.rpartition(".")
            setattr(twin.get_submodule(parent), child, linear)
    return twin


@pytest.fixture
def pair():
    model = tiny_model("gpt2", dtype=torch.float64)
    return model, _linear_twin(model)


def test_the_twin_is_the_same_function(pair):
    model, twin = pair
    tokens = random_tokens(model)
    assert any(isinstance(m, nn.Linear) for m in twin.transformer.h.modules())
    with torch.no_grad():
        torch.testing.assert_close(model(tokens).logits, twin(tokens).logits, rtol=0, atol=1e-12)


def test_conv1d_is_presented_as_d_out_by_d_in(pair):
    model, twin = pair
    for pm, tm in zip(adapter_for(model).prunable_modules(model),
                      adapter_for(twin).prunable_modules(twin), strict=True):
        assert pm.transposed and not tm.transposed
        assert pm.shape == tm.shape == tuple(tm.module.weight.shape)
        assert torch.equal(ModuleState.dense(pm).theta(), ModuleState.dense(tm).theta())


def test_writes_through_the_view_reach_the_conv1d(pair):
    model, _ = pair
    pm = adapter_for(model).prunable_modules(model)[0]
    state = ModuleState.dense(pm)
    theta = state.theta()
    theta[3] = 0.0
    state.set_theta(theta)
    assert torch.all(pm.module.weight[:, 3] == 0) and pm.module.bias[3] == 0


def test_curvature_is_the_same(pair):
    model, twin = pair
    tokens = random_tokens(model)
    curvatures = []
    for m in (model, twin):
        _, session = make_session(m, method="surgeon", calibration=tokens)
        result = session.estimator.estimate(m, session.modules(), session.batches(), progress=False)
        curvatures.append(result.curvatures)
    for name, c in curvatures[0].items():
        for (g, a), (g2, a2) in zip(c.factors, curvatures[1][name].factors, strict=True):
            torch.testing.assert_close(a, a2, rtol=1e-12, atol=1e-12)
            torch.testing.assert_close(g, g2, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("method", "structure"), [
    ("surgeon", "row-col"), ("surgeon", "element"), ("kobd", "2:4"), ("sparsegpt", "2:4"), ("wanda", "element"),
])
def test_pruning_gives_the_same_masks_and_weights(pair, method, structure):
    model, twin = pair
    tokens = random_tokens(model)
    target = 0.8 if structure == "row-col" else 0.5
    sessions = [check_prune(m, method=method, structure=structure, target_size=target, shots=2,
                            calibration=tokens) for m in (model, twin)]
    for s, t in zip(sessions[0].states, sessions[1].states, strict=True):
        assert torch.equal(s.mask, t.mask), s.pm.name
        torch.testing.assert_close(s.pm.weight, t.pm.weight, rtol=1e-9, atol=1e-10)
    with torch.no_grad():
        torch.testing.assert_close(model(tokens).logits, twin(tokens).logits, rtol=1e-9, atol=1e-9)


def test_lora_on_conv1d_keeps_a_row_col_mask_exact():
    """LoRA adapters on Conv1D (peft's fan_in_fan_out layout) stay inside the live rows and
    columns: merging them changes no logit, and the masked weights stay zero."""
    import attrs

    from llm_surgeon.methods.loop import lora_hook, run_shots

    model = tiny_model("gpt2")
    method, session = make_session(model, method="surgeon", structure="row-col", target_size=0.8)
    session.config = attrs.evolve(session.config, lora=attrs.evolve(session.config.lora, enabled=True,
                                                                    steps_per_shot=3))
    lora = run_shots(method, session, hooks=[lora_hook])[-1].info["lora"]
    assert lora["merge_logit_change"]["max_abs"] < 1e-5 and lora["merge_dropped_delta"] == 0.0
    assert all(torch.all(s.pm.weight[~s.mask] == 0) for s in session.states)
