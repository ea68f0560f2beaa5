"""Windows that start with BOS (Gemma-style tokenizers), the shipped WikiText-2 and the hub fallback."""

from __future__ import annotations

import pytest
import torch

from llm_surgeon.data import text as text_module
from llm_surgeon.data.config import CalibrationConfig, DataConfig, EvalConfig
from llm_surgeon.data.text import BUNDLED_WIKITEXT, load_text
from llm_surgeon.data.windows import calibration_windows, eval_windows, tokenize, window_bos
from llm_surgeon.errors import ConfigError


def test_bos_policy(tiny_tokenizer, bos_tokenizer):
    bos = bos_tokenizer.bos_token_id
    assert window_bos(bos_tokenizer, "auto") == bos and window_bos(bos_tokenizer, "never") is None
    assert window_bos(tiny_tokenizer, "auto") is None  # adds no BOS: plain windows, as before
    with pytest.raises(ConfigError, match="no BOS token"):
        window_bos(tiny_tokenizer, "always")


def test_eval_windows_start_with_bos_and_cover_the_stream_once(bos_tokenizer, wikitext_dir):
    ev = EvalConfig(data=DataConfig(data_dir=str(wikitext_dir), split="test"), seqlen=16, windows=5)
    info = {}
    windows = eval_windows(bos_tokenizer, ev, info)
    bos = bos_tokenizer.bos_token_id
    stream = tokenize(bos_tokenizer, (wikitext_dir / "wiki.test.raw").read_text())
    assert int(stream[0]) == bos and info["bos_token_id"] == bos
    assert windows.shape == (5, 16) and torch.all(windows[:, 0] == bos)
    assert torch.equal(windows[:, 1:].reshape(-1), stream[1 : 1 + 5 * 15])  # no overlap, no gap
    plain = eval_windows(bos_tokenizer, EvalConfig(data=ev.data, seqlen=16, windows=5, bos="never"))
    assert torch.equal(plain.reshape(-1), stream[: 5 * 16])


def test_calibration_windows_start_with_bos(bos_tokenizer, tiny_tokenizer, wikitext_dir):
    cal = CalibrationConfig(data=DataConfig(data_dir=str(wikitext_dir), split="validation"), nsamples=3,
                            seqlen=12)
    windows, info = calibration_windows(bos_tokenizer, cal)
    assert windows.shape == (3, 12) and torch.all(windows[:, 0] == bos_tokenizer.bos_token_id)
    assert (windows[:, 1:] != bos_tokenizer.bos_token_id).all() and info["bos_token_id"] is not None
    _, plain_info = calibration_windows(tiny_tokenizer, cal)
    assert plain_info["bos_token_id"] is None


def test_the_shipped_wikitext_is_the_reference_copy():
    import hashlib

    expected = {"wiki.valid.raw": "4cd0f6876d07a413aa911261ff6d363c72d757d47f0fdd6015702014c89cb9c7",
                "wiki.test.raw": "173c87a53759e0201f33e0ccf978e510c2042d7f2cb78229d9a50d79b9e7dd08"}
    for name, digest in expected.items():
        assert hashlib.sha256((BUNDLED_WIKITEXT / name).read_bytes()).hexdigest() == digest
    assert "CC BY-SA 3.0" in (BUNDLED_WIKITEXT / "LICENSE.md").read_text()
    text, info = load_text(DataConfig(dataset="wikitext2-bundled", split="train"))
    assert info["split_used"] == "validation" and info["source"].startswith("bundled:")


def test_unreachable_hub_falls_back_to_the_cache_then_the_shipped_copy(monkeypatch):
    import datasets

    def no_cache(*args, **kwargs):
        raise ConnectionError("offline and not cached")

    monkeypatch.setattr(text_module, "hub_reachable", lambda: False)
    monkeypatch.setattr(datasets, "load_dataset", no_cache)
    text, info = load_text(DataConfig(split="test"))
    assert info["source"].startswith("bundled:") and "hub not reachable" in info["source"]
    assert text == (BUNDLED_WIKITEXT / "wiki.test.raw").read_text(encoding="utf-8")

    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: {"text": ["a", "", "b"]})
    text, info = load_text(DataConfig(split="test"))
    assert text == "a \nb" and info["source"].startswith("hub cache:")


def test_a_reachable_hub_that_fails_is_an_error(monkeypatch):
    import datasets

    def broken(*args, **kwargs):
        raise RuntimeError("server error")

    monkeypatch.setattr(text_module, "hub_reachable", lambda: True)
    monkeypatch.setattr(datasets, "load_dataset", broken)
    with pytest.raises(ConfigError, match="server error.*--data-dir"):
        load_text(DataConfig(split="test"))
