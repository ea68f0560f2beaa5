"""Chat calibration inside a run: BOS with chat templates, mixtures of every dataset, the
order of a run (tokenizer checks before the weights, generation right after), and resume."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from chat_templates import TEMPLATE

from llm_surgeon import prune
from llm_surgeon.data import CalibrationConfig, ChatConfig, DataConfig, calibration_windows
from llm_surgeon.data.conversations import render_ids
from llm_surgeon.data.mixture import Source, parse_sources
from llm_surgeon.data.windows import _bos_windows, conversation_windows, window_bos
from llm_surgeon.errors import ConfigError
from llm_surgeon.run import ppl_cache
from llm_surgeon.run.config import EvalConfig, RunConfig
from llm_surgeon.run.validate import check_calibration

CHATS = [
    [{"role": "user", "content": f"question {i} about the river"},
     {"role": "assistant", "content": f"answer {i}: the river was built during the war"}]
    for i in range(12)
]


@pytest.fixture(scope="module")
def bos_chat_tokenizer(bos_tokenizer):
    """A Gemma-like tokenizer: it adds BOS to a text, and its chat template writes BOS itself."""
    tok = copy.deepcopy(bos_tokenizer)
    tok.chat_template = "{{ bos_token }}" + TEMPLATE
    return tok


def _double_bos(windows: torch.Tensor, bos: int) -> int:
    return int(((windows[:, :-1] == bos) & (windows[:, 1:] == bos)).sum())


def test_bos_windows_use_a_conversations_own_bos():
    b = 99
    stream = torch.tensor([b, 1, 2, 3, b, 4, 5, 6, 7, b, 8, 9])
    windows = _bos_windows(stream, 4, b)
    assert windows.tolist() == [[b, 1, 2, 3], [b, 4, 5, 6], [b, 7, b, 8]]


def test_chat_windows_of_a_bos_template_start_with_exactly_one_bos(bos_chat_tokenizer):
    tok = bos_chat_tokenizer
    bos = window_bos(tok, "auto")
    assert bos == tok.bos_token_id
    ids = render_ids(tok, CHATS[0])
    assert ids[0] == bos and ids.count(bos) == 1  # the template's; the tokenizer adds none
    windows, info = conversation_windows(tok, CHATS, 6, 16, seed=2, bos=bos)
    assert windows.shape == (6, 16) and torch.all(windows[:, 0] == bos)
    assert _double_bos(windows, bos) == 0
    # Every stream token is in one window at most, in order: the windows' tokens without
    # their added prefixes are a sub-sequence of the stream.
    everything, _ = conversation_windows(tok, CHATS, info["windows_available"], 16, seed=2, bos=bos)
    assert _double_bos(everything, bos) == 0
    stream_bos = sum(render_ids(tok, c).count(bos) for c in CHATS)
    assert int((everything == bos).sum()) >= min(stream_bos, everything.shape[0])

    # Through calibration_windows (and a mixture with text windows), the same holds.
    cal = CalibrationConfig(data=DataConfig(dataset="chat"), nsamples=6, seqlen=16, seed=2)
    chat, cal_info = calibration_windows(tok, cal, conversations=CHATS)
    assert torch.equal(chat, windows) and cal_info["bos_token_id"] == bos
    never, _ = calibration_windows(tok, CalibrationConfig(data=DataConfig(dataset="chat"), nsamples=6,
                                                          seqlen=16, seed=2, bos="never"), conversations=CHATS)
    assert not torch.all(never[:, 0] == bos) and _double_bos(never, bos) == 0


def test_a_mixture_with_bos_has_no_double_bos(bos_chat_tokenizer):
    data = DataConfig(dataset="wikitext2-bundled:0.5,chat:0.5", split="validation")
    windows, info = calibration_windows(bos_chat_tokenizer, CalibrationConfig(data=data, nsamples=8, seqlen=16),
                                        conversations=CHATS)
    bos = bos_chat_tokenizer.bos_token_id
    assert torch.all(windows[:, 0] == bos) and _double_bos(windows, bos) == 0
    assert info["source"].startswith("bundled:") and info["bos_token_id"] == bos


def test_mixtures_take_every_text_dataset(chat_tokenizer, tmp_path, monkeypatch):
    assert parse_sources("wikitext2-bundled:0.5,chat:0.5") == (Source("wikitext2-bundled", 0.5),
                                                                Source("chat", 0.5))
    assert parse_sources("stdlib:0.25,chat:0.75") == (Source("python-stdlib", 0.25), Source("chat", 0.75))
    assert parse_sources("manpages-de:0.5,chat:0.5")[0].name == "manpages-de"
    data = DataConfig(dataset="bundled:0.5,chat:0.5", split="validation")
    windows, info = calibration_windows(chat_tokenizer, CalibrationConfig(data=data, nsamples=4, seqlen=16),
                                        conversations=CHATS)
    assert windows.shape == (4, 16) and [s["windows"] for s in info["sources"]] == [2, 2]
    with pytest.raises(ConfigError, match="at most one text dataset"):
        parse_sources("wikitext2-bundled:0.5,python-stdlib:0.5")
    monkeypatch.setenv("LLM_SURGEON_DATA", str(tmp_path / "empty"))
    with pytest.raises(ConfigError, match="manpages-de is not in the cache"):
        check_calibration(CalibrationConfig(data=DataConfig(dataset="manpages-de:0.5,chat:0.5")))


def test_the_dense_ppl_key_covers_what_shapes_the_windows(tiny_model_dir, tiny_tokenizer, bos_tokenizer):
    config = RunConfig(model=str(tiny_model_dir))
    stream = torch.arange(2048)
    keys = {ppl_cache.key(config, stream.reshape(shape)) for shape in ((4, 512), (8, 256), (2, 1024))}
    assert len(keys) == 3  # same tokens, other windows
    from llm_surgeon.data.windows import eval_windows

    data = DataConfig(dataset="wikitext2-bundled")
    auto = eval_windows(bos_tokenizer, EvalConfig(data=data, seqlen=32, windows=2))
    never = eval_windows(bos_tokenizer, EvalConfig(data=data, seqlen=32, windows=2, bos="never"))
    assert ppl_cache.key(config, auto) != ppl_cache.key(config, never)
    assert ppl_cache.key(config, auto) == ppl_cache.key(config, auto.clone())


def _chat_run(model_dir, data_dir, out=None, **calibration) -> RunConfig:
    cal = CalibrationConfig(data=DataConfig(dataset="wikitext2:0.5,chat:0.5", data_dir=str(data_dir),
                                            split="validation"),
                            nsamples=4, seqlen=32, chat=ChatConfig(max_prompts=6, max_new_tokens=8), **calibration)
    return RunConfig(model=str(model_dir), method="wanda", structure="element", target_size=0.6, shots=2,
                     calibration=cal, evaluation=EvalConfig(data=DataConfig(data_dir=str(data_dir)), seqlen=32,
                                                            windows=2),
                     out=None if out is None else str(out))


def test_no_chat_template_is_an_error_before_the_weights_load(tiny_model_dir, wikitext_dir, monkeypatch):
    """Even where the template cannot be read from the files (a hub model), the tokenizer says so."""
    from llm_surgeon.model import loading
    from llm_surgeon.run import runner

    monkeypatch.setattr(loading, "has_chat_template", lambda spec: None)

    def no_weights(*args, **kwargs):
        raise AssertionError("weights were loaded")

    monkeypatch.setattr(runner, "load_weights", no_weights)
    with pytest.raises(ConfigError, match="no chat template"):
        prune(_chat_run(tiny_model_dir, wikitext_dir), progress=False)


def test_text_of_a_self_generated_mixture_is_checked_before_the_weights(chat_model_dir, tmp_path, monkeypatch):
    from llm_surgeon.run import runner

    def no_weights(*args, **kwargs):
        raise AssertionError("weights were loaded")

    monkeypatch.setattr(runner, "load_weights", no_weights)
    (tmp_path / "wiki.valid.raw").write_text("too short\n")
    (tmp_path / "wiki.test.raw").write_text("the river was built during the war " * 200)
    with pytest.raises(ConfigError, match="fewer than seqlen"):
        prune(_chat_run(chat_model_dir, tmp_path), progress=False)


def test_a_resumed_run_reuses_the_generated_conversations(chat_model_dir, wikitext_dir, tmp_path, monkeypatch,
                                                          fresh_registry):
    """Stopped in shot 2, resumed without generating again: the uninterrupted run's masks."""
    from llm_surgeon.run import chat
    from llm_surgeon.util import faults

    monkeypatch.setenv("LLM_SURGEON_CACHE", "off")
    reference = prune(_chat_run(chat_model_dir, wikitext_dir, tmp_path / "ref"), progress=False)
    config = _chat_run(chat_model_dir, wikitext_dir, tmp_path / "out")
    monkeypatch.setattr(faults, "_counts", type(faults._counts)())
    monkeypatch.setenv("LLM_SURGEON_FAULT", "checkpoint-write:2=raise")  # after shot 1 is checkpointed
    with pytest.raises(RuntimeError, match="fault injected"):
        prune(config, progress=False)
    monkeypatch.delenv("LLM_SURGEON_FAULT")
    partial = tmp_path / ".out.partial"
    assert (partial / "calibration_conversations.jsonl").is_file()

    def no_generation(*args, **kwargs):
        raise AssertionError("the conversations were generated again")

    generate = chat.self_generate
    monkeypatch.setattr(chat, "self_generate", no_generation)
    resumed = prune(config, progress=False, resume=True)
    monkeypatch.setattr(chat, "self_generate", generate)
    assert resumed["resumed_after"] == [1]
    assert resumed["mask_sha256"] == reference["mask_sha256"]
    conversations = resumed["calibration"]["conversations"]
    assert conversations["cache"] == "work folder (resumed)" and conversations["source"] == "self-generated"
    saved = (tmp_path / "out" / "calibration_conversations.jsonl").read_text()
    assert saved == (tmp_path / "ref" / "calibration_conversations.jsonl").read_text()

    # Conversations that changed in the work folder give other windows: refused, as in issue 17.
    with pytest.raises(RuntimeError):
        monkeypatch.setenv("LLM_SURGEON_FAULT", "checkpoint-write:2=raise")
        monkeypatch.setattr(faults, "_counts", type(faults._counts)())
        prune(_chat_run(chat_model_dir, wikitext_dir, tmp_path / "again"), progress=False)
    monkeypatch.delenv("LLM_SURGEON_FAULT")
    stored = tmp_path / ".again.partial" / "calibration_conversations.jsonl"
    records = [json.loads(line) for line in stored.read_text().splitlines()]
    for r in records:
        r["messages"][0]["content"] += " Answer in one long paragraph, please."
    stored.write_text("".join(json.dumps(r) + "\n" for r in records))
    with pytest.raises(ConfigError, match="calibration windows differ"):
        prune(_chat_run(chat_model_dir, wikitext_dir, tmp_path / "again"), progress=False, resume=True)
