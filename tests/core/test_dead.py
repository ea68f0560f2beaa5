"""Dead-structure propagation: what it frees, and that no logit changes."""

from __future__ import annotations

import pytest
import torch

from llm_surgeon.model import ModuleState, adapter_for
from llm_surgeon.pruning import count_dead, remove_dead
from llm_surgeon.testing import make_session, random_tokens, tiny_model

FAMILIES = ["llama", "llama-bias", "qwen2", "mistral", "opt"]
#: Every built-in family (Gemma 3: per-head q/k norms; GPT-2: Conv1D; Phi-3: fused projections).
ALL_FAMILIES = [*FAMILIES, "gemma3", "gemma3-multimodal", "gpt2", "phi3"]
L = "model.layers.0."


def _model(family: str, dtype=torch.float32, seed: int = 0):
    """A tiny model with random biases (nonzero constants to fold) and its states/couplings."""
    model = tiny_model(family, seed=seed, dtype=dtype)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=gen).to(dtype))
            elif p.dim() == 2:
                p.copy_((torch.randn(p.shape, generator=gen) / p.shape[1] ** 0.5).to(dtype))
    adapter = adapter_for(model)
    states = {pm.name: ModuleState.dense(pm) for pm in adapter.prunable_modules(model)}
    return model, states, adapter.couplings(model)


def _logits(model, tokens):
    with torch.no_grad():
        return model(tokens).logits.double()


def _rows(state, rows, *, bias=False):
    state.mask[rows] = False
    state.apply_mask()
    if bias and state.pm.module.bias is not None:
        with torch.no_grad():
            state.pm.module.bias[rows] = 0


def _cols(state, cols):
    state.mask[:, cols] = False
    state.apply_mask()


def _dead_rows(state):
    return (~state.mask.any(1)).nonzero().flatten().tolist()


def _dead_cols(state):
    return (~state.mask.any(0)).nonzero().flatten().tolist()


def _bias_zero(state, rows):
    b = state.pm.module.bias
    return b is None or bool((b[rows] == 0).all())


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_random_removals_leave_every_logit_unchanged(family):
    model, states, couplings = _model(family)
    gen = torch.Generator().manual_seed(1)
    for s in states.values():  # rows (with their bias) and columns, as row-col removes them
        rows = torch.rand(s.mask.shape[0], generator=gen) < 0.3
        cols = torch.rand(s.mask.shape[1], generator=gen) < 0.3
        _rows(s, rows, bias=True)
        _cols(s, cols)
    tokens = random_tokens(model, 3, 16)
    before = _logits(model, tokens)
    predicted = count_dead(list(states.values()), couplings)
    freed = remove_dead(list(states.values()), couplings)
    assert freed == predicted > 0
    assert float((_logits(model, tokens) - before).abs().max()) <= 1e-5
    assert remove_dead(list(states.values()), couplings) == 0  # a fixed point
    for s in states.values():
        assert torch.all(s.pm.weight[~s.mask] == 0)


def test_llama_mlp_neurons_die_with_any_member_and_fold_constants():
    model, states, couplings = _model("llama-bias")
    gate, up, down = (states[L + f"mlp.{r}_proj"] for r in ("gate", "up", "down"))
    tokens = random_tokens(model, 2, 12)
    _cols(down, [0])                 # no reader: gate and up rows 0 are dead
    _rows(up, [1], bias=True)        # up output 0: the neuron is 0
    _rows(up, [2])                   # up output = its bias: act(gate) * b, not constant, stays
    _rows(gate, [3])
    _rows(up, [3])                   # act(b_gate) * b_up: a constant, folded into down's bias
    before = _logits(model, tokens)
    down_bias = down.pm.module.bias.detach().clone()
    remove_dead(list(states.values()), couplings)
    assert float((_logits(model, tokens) - before).abs().max()) <= 1e-5
    assert _dead_rows(gate) == [0, 1, 3] and _dead_rows(up) == [0, 1, 2, 3]
    assert _dead_cols(down) == [0, 1, 3]
    assert _bias_zero(gate, [0, 1, 3]) and _bias_zero(up, [0, 1, 3])
    assert not _bias_zero(up, [2])
    assert not torch.equal(down.pm.module.bias, down_bias)  # the constant went into the bias


def test_attention_values_outputs_queries_and_keys_with_gqa_and_rope():
    model, states, couplings = _model("llama-bias")
    q, k, v, o = (states[L + f"self_attn.{r}_proj"] for r in "qkvo")
    # 4 query heads of 4 dims, 2 key/value heads: query heads 0, 1 share key/value head 0.
    tokens = random_tokens(model, 2, 12)
    _rows(v, [0], bias=True)            # value dim 0 of group 0 is 0: o columns 0 and 4 dead
    _rows(v, [1])                       # value dim 1 = its bias: folded into o's bias
    _cols(o, [2, 6])                    # dim 2 unread in both heads of group 0: v row 2 dead
    _cols(o, [3])                       # dim 3 still read by head 1: v row 3 stays
    # ...but head 0 now reads nothing (columns 0-3): its query rows are dead.
    _cols(o, list(range(8, 12)))        # head 2 unread: its query rows are dead
    _rows(k, [4, 6], bias=True)         # RoPE pair (0, 2) of key head 1: q rows 12, 14 dead
    _rows(k, [5], bias=True)            # row 5 alone (its partner 7 lives): nothing
    before = _logits(model, tokens)
    remove_dead(list(states.values()), couplings)
    assert float((_logits(model, tokens) - before).abs().max()) <= 1e-5
    assert _dead_rows(v) == [0, 1, 2]
    assert _dead_cols(o) == [0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 11]
    assert _dead_rows(q) == [0, 1, 2, 3, 8, 9, 10, 11, 12, 14]
    assert _dead_rows(k) == [4, 5, 6]  # head 1 still queries key head 0


def test_keys_die_when_their_queries_are_zero_in_every_head_of_the_group():
    model, states, couplings = _model("llama")
    q, k = states[L + "self_attn.q_proj"], states[L + "self_attn.k_proj"]
    tokens = random_tokens(model, 2, 12)
    _rows(q, [1, 3, 5, 7])              # RoPE pair (1, 3) zero in both heads of group 0
    _rows(q, [8])                       # one row of a pair in head 2: nothing
    before = _logits(model, tokens)
    remove_dead(list(states.values()), couplings)
    assert float((_logits(model, tokens) - before).abs().max()) <= 1e-5
    assert _dead_rows(k) == [1, 3]
    assert _dead_rows(q) == [1, 3, 5, 7, 8]


def test_constant_value_rows_stay_without_an_output_bias():
    model, states, couplings = _model("qwen2")  # q/k/v biases, no o bias
    v, o = states[L + "self_attn.v_proj"], states[L + "self_attn.o_proj"]
    _rows(v, [0])
    remove_dead(list(states.values()), couplings)
    assert _dead_cols(o) == [] and not _bias_zero(v, [0])


def test_opt_fc1_rows_without_weights_fold_act_of_their_bias_into_fc2():
    model, states, couplings = _model("opt")
    fc1, fc2 = states["model.decoder.layers.0.fc1"], states["model.decoder.layers.0.fc2"]
    tokens = random_tokens(model, 2, 12)
    _rows(fc1, [0, 1, 2])               # relu(b) * fc2[:, i] is a constant
    _cols(fc2, [5])                     # no reader: fc1 row 5 dead with its bias
    before = _logits(model, tokens)
    fc2_bias = fc2.pm.module.bias.detach().clone()
    remove_dead(list(states.values()), couplings)
    assert float((_logits(model, tokens) - before).abs().max()) <= 1e-5
    assert _dead_rows(fc1) == [0, 1, 2, 5] and _dead_cols(fc2) == [0, 1, 2, 5]
    assert _bias_zero(fc1, [0, 1, 2, 5])
    b = fc1.pm.module.bias
    assert b is not None
    assert not torch.equal(fc2.pm.module.bias, fc2_bias)


@pytest.mark.parametrize("family", ["llama-bias", "opt"])
def test_a_pruning_shot_leaves_dead_structures_that_propagation_removes_exactly(family):
    model, states, _ = _model(family)
    method, session = make_session(model, method="surgeon", structure="row-col",
                                   structure_options={"propagate": False}, target_size=0.6, shots=1)
    method.run_shot(session, 1, 0.6)
    tokens = random_tokens(model, 3, 16)
    before = _logits(model, tokens)
    freed = remove_dead(session.states, session.couplings)
    assert freed > 0
    assert float((_logits(model, tokens) - before).abs().max()) <= 1e-5


@pytest.mark.parametrize("family", ["llama", "opt"])
def test_freed_weights_count_toward_the_shot_target(family):
    model, _, _ = _model(family)
    method, session = make_session(model, method="surgeon", structure="row-col", target_size=0.6, shots=1)
    shot_log = method.run_shot(session, 1, 0.6)
    assert shot_log.info["dead_freed"] > 0
    assert count_dead(session.states, session.couplings) == 0
    largest = max(session.structure.max_candidate_weights(s) for s in session.scopes)
    assert abs(session.remaining_weights() - 0.6 * session.total_weights()) <= largest
