"""The pass machinery of llm_surgeon.curvature.passes: what observers see, and that the model is left alone."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from llm_surgeon.curvature import FisherType, ModuleTokens, PassOptions, TokenObserver, run_pass
from llm_surgeon.curvature.tokens import GramCache
from llm_surgeon.model import adapter_for
from llm_surgeon.testing import tiny_model


def _batches(model, n=2, batch=2, seqlen=6):
    gen = torch.Generator().manual_seed(0)
    return [torch.randint(0, model.config.vocab_size, (batch, seqlen), generator=gen) for _ in range(n)]


class Recorder(TokenObserver):
    def __init__(self):
        self.forward_calls: list[tuple[int, tuple, int]] = []
        self.backward_calls: list[tuple[int, Tensor, Tensor]] = []  # noqa: F821
        self.grams: list[tuple[int, int]] = []

    def forward(self, tokens: ModuleTokens) -> None:
        gram = tokens.gram()
        self.grams.append((tokens.index, id(gram)))
        self.forward_calls.append((tokens.index, tuple(tokens.a.shape), tokens.g is None))

    def backward(self, tokens: ModuleTokens) -> None:
        self.backward_calls.append((tokens.index, tokens.a.clone(), tokens.g.clone()))


@pytest.mark.parametrize("family", ["llama", "opt"])
def test_observer_sees_tokens_that_predict_a_token(family):
    model = tiny_model(family, dtype=torch.float64)
    modules = adapter_for(model).prunable_modules(model)
    batches = _batches(model)
    rec = Recorder()
    stats = run_pass(model, modules, batches, rec, gradients=True,
                     options=PassOptions(dtype=torch.float64), progress=False)
    assert stats.tokens == 2 * 2 * 5 and stats.batches == 2 and stats.seconds > 0
    assert len(rec.forward_calls) == 2 * len(modules) and len(rec.backward_calls) == 2 * len(modules)
    for index, shape, no_g in rec.forward_calls:
        pm = modules[index]
        assert no_g and shape == (10, pm.shape[1] + pm.has_bias)
    # g of the last module of the last batch: the gradient of the summed CE w.r.t. its output
    index, a, g = rec.backward_calls[-1]
    pm = modules[index]
    out = {}
    def keep(module, args, output):
        output.retain_grad()
        out["o"] = output

    handle = pm.module.register_forward_hook(keep)
    logits = model(input_ids=batches[-1]).logits
    handle.remove()
    F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), batches[-1][:, 1:].reshape(-1),
                    reduction="sum").backward()
    ref = out["o"].grad.reshape(2, 6, -1)[:, :-1].reshape(10, -1)
    torch.testing.assert_close(g, ref)
    model.zero_grad(set_to_none=True)
    if pm.has_bias:
        assert torch.all(a[:, -1] == 1)


def test_inputs_shared_by_q_k_v_have_one_gram():
    model = tiny_model("llama")
    modules = adapter_for(model).prunable_modules(model)
    rec = Recorder()
    run_pass(model, modules, _batches(model, n=1), rec, gradients=False, progress=False)
    gram_of = dict(rec.grams)
    by_role = {pm.role: gram_of[i] for i, pm in enumerate(modules) if pm.layer == 0}
    assert by_role["q"] == by_role["k"] == by_role["v"]
    assert by_role["gate"] == by_role["up"]
    assert len({by_role["q"], by_role["o"], by_role["gate"], by_role["down"]}) == 4


def test_forward_only_pass_runs_no_backward():
    model = tiny_model("llama")
    modules = adapter_for(model).prunable_modules(model)
    rec = Recorder()
    run_pass(model, modules, _batches(model, n=1), rec, gradients=False, progress=False)
    assert rec.backward_calls == [] and len(rec.forward_calls) == len(modules)


def test_sampled_labels_give_one_backward_per_sample():
    model = tiny_model("llama")
    modules = adapter_for(model).prunable_modules(model)[:2]
    rec = Recorder()
    run_pass(model, modules, _batches(model, n=1), rec, gradients=True,
             options=PassOptions(fisher_type=FisherType.SAMPLED, samples=3), progress=False)
    assert len(rec.backward_calls) == 3 * 2
    g_first = [g for i, _, g in rec.backward_calls if i == 0]
    assert not torch.equal(g_first[0], g_first[1])


class Boom(TokenObserver):
    def backward(self, tokens: ModuleTokens) -> None:
        raise RuntimeError("boom")


def test_model_left_exactly_as_found_even_on_error():
    model = tiny_model("opt")
    model.train()
    model.lm_head.weight.requires_grad_(False)
    model.model.decoder.layers[0].fc1.bias.requires_grad_(False)
    flags = [p.requires_grad for p in model.parameters()]
    hooks_before = sum(len(m._forward_hooks) for m in model.modules())
    modules = adapter_for(model).prunable_modules(model)
    with pytest.raises(RuntimeError, match="boom"):
        run_pass(model, modules, _batches(model), Boom(), gradients=True, progress=False)
    assert [p.requires_grad for p in model.parameters()] == flags
    assert model.training
    assert sum(len(m._forward_hooks) for m in model.modules()) == hooks_before
    assert all(p.grad is None for p in model.parameters())


def test_no_weight_gradients_are_formed():
    model = tiny_model("llama")
    modules = adapter_for(model).prunable_modules(model)
    seen = []

    class Check(TokenObserver):
        def backward(self, tokens):
            seen.append(all(not p.requires_grad for p in model.parameters()))

    run_pass(model, modules, _batches(model, n=1), Check(), gradients=True, progress=False)
    assert seen and all(seen)
    assert all(p.grad is None and p.requires_grad for p in model.parameters())


def test_low_precision_model_gives_float32_statistics():
    model = tiny_model("llama", dtype=torch.bfloat16)
    modules = adapter_for(model).prunable_modules(model)[:1]
    rec = Recorder()
    run_pass(model, modules, _batches(model, n=1), rec, gradients=True, progress=False)
    _, a, g = rec.backward_calls[0]
    assert a.dtype == g.dtype == torch.float32 and torch.isfinite(g).all()


def test_bad_batches_are_rejected():
    model = tiny_model("llama")
    modules = adapter_for(model).prunable_modules(model)[:1]
    with pytest.raises(ValueError, match="no calibration batches"):
        run_pass(model, modules, [], TokenObserver(), gradients=True, progress=False)
    with pytest.raises(ValueError, match="seqlen >= 2"):
        run_pass(model, modules, [torch.zeros(2, 1, dtype=torch.long)], TokenObserver(),
                 gradients=True, progress=False)


def test_gradients_flow_even_under_no_grad():
    model = tiny_model("llama")
    modules = adapter_for(model).prunable_modules(model)[:1]
    rec = Recorder()
    with torch.no_grad():
        run_pass(model, modules, _batches(model, n=1), rec, gradients=True, progress=False)
    assert len(rec.backward_calls) == 1 and rec.backward_calls[0][2].abs().sum() > 0


def test_gram_cache_keeps_only_the_last_inputs():
    cache = GramCache()
    xs = [torch.randn(3, 4) for _ in range(GramCache.size + 3)]
    calls = []
    for x in xs:
        cache.get(x, (False,), lambda x=x: calls.append(1) or x.T @ x)
    assert len(cache._entries) == GramCache.size and len(calls) == len(xs)
    cache.get(xs[-1], (False,), lambda: calls.append(1) or xs[-1].T @ xs[-1])  # recent: a hit
    cache.get(xs[0], (False,), lambda: calls.append(1) or xs[0].T @ xs[0])  # evicted: computed again
    assert len(calls) == len(xs) + 1


def test_observers_that_read_no_inputs_in_backward_do_not_get_them():
    model = tiny_model("llama")
    modules = adapter_for(model).prunable_modules(model)[:2]
    seen = []

    class GradientsOnly(TokenObserver):
        backward_inputs = False

        def backward(self, tokens):
            seen.append(tokens.g.shape)
            with pytest.raises(RuntimeError, match="backward_inputs"):
                tokens.a  # noqa: B018

    run_pass(model, modules, _batches(model, n=1), GradientsOnly(), gradients=True, progress=False)
    assert len(seen) == 2
