"""Layer-by-layer propagation: caught inputs, pruned outputs fed forward, shared statistics."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, OPTConfig, OPTForCausalLM

from llm_surgeon.plugins.architectures.llama import LlamaAdapter
from llm_surgeon.plugins.architectures.opt import OPTAdapter
from llm_surgeon.pruning import capture_layer_inputs, layer_groups, propagate, run_layer


def _tiny(kind: str):
    torch.manual_seed(0)
    if kind == "llama":
        cfg = LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=3,
                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32)
        return LlamaForCausalLM(cfg).eval(), LlamaAdapter()
    cfg = OPTConfig(vocab_size=50, hidden_size=16, ffn_dim=32, num_hidden_layers=3,
                    num_attention_heads=4, max_position_embeddings=32, word_embed_proj_dim=16)
    return OPTForCausalLM(cfg).eval(), OPTAdapter()


def _batches():
    tokens = torch.randint(0, 50, (6, 10), generator=torch.Generator().manual_seed(2))
    return list(tokens.split(4))  # a full and a smaller batch


class _Recorder:
    """A statistic that keeps every input it sees."""

    made = 0

    def __init__(self, d_in: int) -> None:
        type(self).made += 1
        self.inputs: list[torch.Tensor] = []

    def add_batch(self, x: torch.Tensor) -> None:
        self.inputs.append(x.clone())


def _halve(pm, _stat) -> None:
    """Zero every other input column (a deterministic 'pruning')."""
    with torch.no_grad():
        pm.module.weight[:, ::2] = 0.0


def _inputs_of_final_model(model, adapter, batches):
    """Inputs of every prunable module during ordinary forward passes of ``model``."""
    seen: dict[str, list[torch.Tensor]] = {}
    handles = []
    for pm in adapter.prunable_modules(model):
        def hook(_m, args, _out, name=pm.name):
            seen.setdefault(name, []).append(args[0].reshape(-1, args[0].shape[-1]).clone())
        handles.append(pm.module.register_forward_hook(hook))
    with torch.no_grad():
        for b in batches:
            model(b, use_cache=False)
    for h in handles:
        h.remove()
    return seen


@pytest.mark.parametrize("kind", ["llama", "opt"])
def test_caught_inputs_replay_the_model(kind):
    model, adapter = _tiny(kind)
    batches = _batches()
    inputs = capture_layer_inputs(model, adapter, batches)
    assert len(inputs) == 2 and inputs.hidden[1].shape[0] == 2
    with torch.no_grad():
        hidden = [model(b, output_hidden_states=True).hidden_states for b in batches]
    for layer_index, layer in enumerate(adapter.decoder_layers(model)):
        for b in range(2):
            torch.testing.assert_close(inputs.hidden[b], hidden[b][layer_index])
        inputs.hidden = run_layer(layer, inputs)


@pytest.mark.parametrize("kind", ["llama", "opt"])
def test_true_sequential_modules_see_the_inputs_of_the_pruned_model(kind):
    model, adapter = _tiny(kind)
    batches = _batches()
    stats: dict[str, _Recorder] = {}

    def prune(pm, stat):
        stats[pm.name] = stat
        _halve(pm, stat)

    passes = propagate(model, adapter, batches, make_stat=_Recorder, prune=prune,
                       true_sequential=True)
    assert passes == 3 * (4 + 1)
    final = _inputs_of_final_model(model, adapter, batches)
    assert set(stats) == set(final)
    for name, stat in stats.items():
        for got, want in zip(stat.inputs, final[name], strict=True):
            torch.testing.assert_close(got, want)


def test_layer_at_once_uses_pruned_previous_layers_but_dense_own_layer():
    model, adapter = _tiny("llama")
    batches = _batches()
    stats: dict[str, _Recorder] = {}

    def prune(pm, stat):
        stats[pm.name] = stat
        _halve(pm, stat)

    propagate(model, adapter, batches, make_stat=_Recorder, prune=prune)
    final = _inputs_of_final_model(model, adapter, batches)
    for name, stat in stats.items():
        same = all(torch.allclose(a, b) for a, b in zip(stat.inputs, final[name], strict=True))
        # q/k/v read the layer input, produced by already-pruned layers; the others read
        # activations of their own layer, which were still dense when they were observed.
        assert same == (name.split(".")[-1] in ("q_proj", "k_proj", "v_proj")), name


def test_statistics_are_shared_between_modules_with_the_same_input():
    model, adapter = _tiny("llama")
    _Recorder.made = 0
    stats: dict[str, _Recorder] = {}
    propagate(model, adapter, _batches(), make_stat=_Recorder,
              prune=lambda pm, s: stats.__setitem__(pm.name, s))
    assert _Recorder.made == 3 * 4  # (q,k,v), o, (gate,up), down per layer
    prefix = "model.layers.0."
    assert stats[prefix + "self_attn.q_proj"] is stats[prefix + "self_attn.v_proj"]
    assert stats[prefix + "mlp.gate_proj"] is stats[prefix + "mlp.up_proj"]
    assert stats[prefix + "mlp.up_proj"] is not stats[prefix + "mlp.down_proj"]
    assert len(stats[prefix + "mlp.down_proj"].inputs) == 2  # once per batch


def test_include_and_groups():
    model, adapter = _tiny("opt")
    seen = []
    propagate(model, adapter, _batches(), make_stat=_Recorder,
              prune=lambda pm, s: seen.append(pm.role), include=lambda pm: pm.role in ("q", "fc2"))
    assert seen == ["q", "fc2"] * 3
    modules = adapter.layer_modules(adapter.decoder_layers(model)[0], 0)
    groups = layer_groups(adapter, modules, true_sequential=True)
    assert [[pm.role for pm in g] for g in groups] == [["q", "k", "v"], ["o"], ["fc1"], ["fc2"]]
    assert len(layer_groups(adapter, modules, true_sequential=False)) == 1
