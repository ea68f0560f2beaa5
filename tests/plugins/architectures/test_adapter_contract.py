"""Every built-in adapter passes the adapter contract, and the contract catches broken adapters."""

from __future__ import annotations

import pytest

from llm_surgeon.model import Member
from llm_surgeon.plugins.architectures.gpt2 import GPT2Adapter
from llm_surgeon.plugins.architectures.llama import LlamaAdapter
from llm_surgeon.plugins.architectures.phi3 import Phi3Adapter
from llm_surgeon.pruning import layer_inputs
from llm_surgeon.testing import TINY_FAMILIES, check_adapter, tiny_config, tiny_model
from llm_surgeon.testing.adapter_contract import check_modules, check_propagation
from llm_surgeon.testing.coupling_check import check_couplings
from llm_surgeon.testing.prune_check import random_tokens

#: Families whose adapter declares couplings (all built-ins).
WITH_COUPLINGS = set(TINY_FAMILIES)


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_builtin_adapters_pass_the_contract(family):
    report = check_adapter(tiny_config(family))
    skipped = report.skipped()
    assert set(skipped) <= {"couplings", "dead structures", "compact export"}, report.summary()
    compact = family in {"llama", "llama-bias", "mistral", "qwen2", "opt"}
    assert (report.checks["compact export"] == "ok") == compact, report.summary()
    assert ("couplings" in skipped) == (family not in WITH_COUPLINGS), report.summary()
    assert report.checks["dead structures"] == "ok", report.summary()
    methods = {name.split()[1] for name in report.checks if name.startswith("prune ")}
    assert {"surgeon", "magnitude", "kobd", "lobd", "sparsegpt", "wanda"} <= methods
    assert {"prune surgeon dims", "prune magnitude dims"} <= set(report.checks), report.summary()
    assert report.checks["round trip"] == "ok"


def test_fused_projections_report_their_roles():
    assert check_adapter(tiny_config("phi3"), methods=["magnitude"]).roles == (
        "q", "k", "v", "o", "gate", "up", "down")
    assert check_adapter(tiny_config("gpt2"), methods=["magnitude"]).roles == ("q", "k", "v", "o", "fc1", "fc2")


class _MissesDown(LlamaAdapter):
    linear_roles = LlamaAdapter.linear_roles[:-1]


class _NotTransposed(GPT2Adapter):
    def layer_modules(self, layer, index, prefix=""):
        import attrs

        return [attrs.evolve(pm, transposed=False, parts=()) for pm in super().layer_modules(layer, index, prefix)]


class _ShiftedCoupling(Phi3Adapter):
    def couplings(self, model):
        import attrs

        out = super().couplings(model)
        mlp = next(c for c in out if c.kind == "mlp")
        gate, up, down = mlp.members
        wrong = attrs.evolve(mlp, members=(gate, Member(up.module, "row", 1, up.offset + 1), down),
                             size=mlp.size - 1)
        return [wrong if c is mlp else c for c in out]


def test_contract_catches_an_unlisted_linear():
    model = tiny_model("llama")
    with pytest.raises(AssertionError, match="down_proj is a Linear of a decoder layer"):
        check_modules(model, _MissesDown(), random_tokens(model))


def test_contract_catches_a_conv1d_seen_the_wrong_way_round():
    model = tiny_model("gpt2")
    with pytest.raises(AssertionError, match="transposed"):
        check_modules(model, _NotTransposed(), random_tokens(model))


def test_contract_catches_a_misplaced_coupling_member():
    model = tiny_model("phi3")
    with pytest.raises(AssertionError, match="is not exact"):
        check_couplings(model, _ShiftedCoupling(), random_tokens(model))


def test_contract_catches_propagation_with_the_first_layers_arguments(monkeypatch):
    """Gemma 3's global layer gets its own mask and rotary embedding; reusing the
    sliding layer's arguments for it changes its inputs, and the contract says so."""
    from llm_surgeon.model import adapter_for

    model = tiny_model("gemma3")
    adapter = adapter_for(model)
    check_propagation(model, adapter, random_tokens(model))
    monkeypatch.setattr(layer_inputs, "_same", lambda a, b: True)
    with pytest.raises(AssertionError, match="propagated inputs differ"):
        check_propagation(model, adapter, random_tokens(model))
