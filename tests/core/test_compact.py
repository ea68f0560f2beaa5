"""The real (compact-export) size: whole dimensions, and index-compressed rows and columns."""

from __future__ import annotations

from llm_surgeon.model import ModuleState, adapter_for
from llm_surgeon.pruning import real_parameters
from llm_surgeon.testing import tiny_model

L = "model.layers.0."


def _case(family: str = "llama"):
    model = tiny_model(family)  # hidden 16, intermediate 32, 4 heads of 4, 2 key/value heads
    adapter = adapter_for(model)
    states = {pm.name: ModuleState.dense(pm) for pm in adapter.prunable_modules(model)}
    return states, adapter.couplings(model)


def _real(states, couplings) -> int:
    return real_parameters({n: s.mask for n, s in states.items()}, couplings)


def test_dense_model_is_its_full_size():
    states, couplings = _case()
    assert _real(states, couplings) == sum(s.pm.numel for s in states.values())


def test_a_whole_neuron_or_head_is_dropped_without_indices():
    states, couplings = _case()
    total = _real(states, couplings)
    for role in ("gate", "up"):
        states[L + f"mlp.{role}_proj"].mask[3] = False
    states[L + "mlp.down_proj"].mask[:, 3] = False
    assert _real(states, couplings) == total - 3 * 16
    states[L + "self_attn.q_proj"].mask[4:8] = False  # query head 1
    states[L + "self_attn.o_proj"].mask[:, 4:8] = False
    assert _real(states, couplings) == total - 3 * 16 - 2 * 4 * 16
    states[L + "self_attn.q_proj"].mask[0:4] = False  # head 0: with head 1, the whole group 0
    states[L + "self_attn.o_proj"].mask[:, 0:4] = False
    states[L + "self_attn.k_proj"].mask[0:4] = False
    states[L + "self_attn.v_proj"].mask[0:4] = False
    assert _real(states, couplings) == total - 3 * 16 - 4 * 4 * 16 - 2 * 4 * 16


def test_scattered_rows_count_with_their_index_vector_when_that_is_smaller():
    states, couplings = _case()
    total = _real(states, couplings)
    gate = states[L + "mlp.gate_proj"]
    gate.mask[0] = False  # one row of a 32 x 16 gate: 31 * 16 + 31 indices > 512, stored dense
    assert _real(states, couplings) == total
    q = states[L + "self_attn.q_proj"]
    q.mask[[0, 5, 9, 13, 14]] = False  # 11 of 16 rows left (heads stay): 11 * 16 + 11 < 256
    assert _real(states, couplings) == total - 256 + 11 * 16 + 11
    q.mask[:, [1, 2]] = False  # and 14 of 16 columns: 11 * 14 + 11 + 14
    assert _real(states, couplings) == total - 256 + 11 * 14 + 11 + 14


def test_opt_heads_take_their_key_and_value_rows():
    states, couplings = _case("opt")
    total = _real(states, couplings)
    p = "model.decoder.layers.1."
    for role in ("q", "k", "v"):
        states[p + f"self_attn.{role}_proj"].mask[8:12] = False
    states[p + "self_attn.out_proj"].mask[:, 8:12] = False
    assert _real(states, couplings) == total - 4 * 4 * 16
