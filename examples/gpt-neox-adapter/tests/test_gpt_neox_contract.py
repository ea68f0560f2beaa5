"""The example adapter passes llm-surgeon's adapter contract on a tiny random GPT-NeoX."""

from __future__ import annotations

from transformers import GPTNeoXConfig

from llm_surgeon.registry import Kind, get_registry
from llm_surgeon.testing import check_adapter


def tiny_config() -> GPTNeoXConfig:
    return GPTNeoXConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=64, bos_token_id=0, eos_token_id=0)


def test_the_adapter_is_registered_through_its_entry_point():
    record = get_registry().get(Kind.ARCHITECTURE, "gpt_neox")
    assert record.distribution == "llm-surgeon-gpt-neox"


def test_the_adapter_keeps_the_contract():
    report = check_adapter(tiny_config())
    print(report.summary())
    assert set(report.skipped()) <= {"compact export"}, report.summary()
    assert report.checks["couplings"] == "ok"
