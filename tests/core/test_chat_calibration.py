"""Chat calibration on tiny models: templates, packed windows, mixtures, self-generation, caching."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from chat_templates import TEMPLATE_NO_EOS

from llm_surgeon.data import CalibrationConfig, ChatConfig, DataConfig, calibration_windows
from llm_surgeon.data.conversations import render, render_ids
from llm_surgeon.data.generation import Decoding, generate_replies, self_generate
from llm_surgeon.data.windows import conversation_windows, split_windows
from llm_surgeon.errors import ConfigError

CHATS = [
    [{"role": "user", "content": f"question {i} about the river"},
     {"role": "assistant", "content": f"answer {i}: the river was built during the war"}]
    for i in range(12)
]


def _stream(tokenizer, order):
    ids = []
    for i in order:
        ids += render_ids(tokenizer, CHATS[i])
        if not render(tokenizer, CHATS[i]).rstrip().endswith(tokenizer.eos_token):
            ids.append(tokenizer.eos_token_id)
    return torch.tensor(ids)


def test_render_uses_the_models_template(chat_tokenizer):
    text = render(chat_tokenizer, CHATS[0][:1], add_generation_prompt=True)
    assert text == "<|user|>question 0 about the river<|endoftext|><|assistant|>"
    ids = render_ids(chat_tokenizer, CHATS[0][:1], add_generation_prompt=True)
    assert chat_tokenizer.decode(ids) == text
    assert ids.count(chat_tokenizer.eos_token_id) == 1  # written once, by the template


def test_a_tokenizer_without_template_is_a_clear_error(tiny_tokenizer):
    assert not tiny_tokenizer.chat_template
    with pytest.raises(ConfigError, match="no chat template.*chat or instruct model"):
        render(tiny_tokenizer, CHATS[0])
    cal = CalibrationConfig(data=DataConfig(dataset="chat"), nsamples=2, seqlen=16)
    with pytest.raises(ConfigError, match="no chat template"):
        calibration_windows(tiny_tokenizer, cal, conversations=CHATS)


@pytest.mark.parametrize("eos_in_template", [True, False])
def test_conversation_windows_pack_the_rendered_stream(chat_tokenizer, eos_in_template):
    tokenizer = chat_tokenizer
    if not eos_in_template:
        tokenizer = copy.deepcopy(chat_tokenizer)
        tokenizer.chat_template = TEMPLATE_NO_EOS
    windows, info = conversation_windows(tokenizer, CHATS, 3, 16, seed=5)
    order = torch.randperm(len(CHATS), generator=torch.Generator().manual_seed(5)).tolist()
    stream = _stream(tokenizer, order)
    assert info == {"conversations": 12, "tokens": stream.numel(),
                    "windows_available": stream.numel() // 16}
    # The template ends every turn with EOS; without that, packing adds one per conversation.
    eos_count = 2 * len(CHATS) if eos_in_template else len(CHATS)
    assert int((stream == tokenizer.eos_token_id).sum()) == eos_count
    rows = [tuple(r) for r in split_windows(stream, 16).tolist()]
    assert windows.shape == (3, 16) and all(tuple(w) in rows for w in windows.tolist())
    assert len({tuple(w) for w in windows.tolist()}) == 3  # drawn without replacement
    again, _ = conversation_windows(tokenizer, CHATS, 3, 16, seed=5)
    other, _ = conversation_windows(tokenizer, CHATS, 3, 16, seed=6)
    assert torch.equal(windows, again) and not torch.equal(windows, other)


def test_too_few_conversations_say_what_to_change(chat_tokenizer):
    with pytest.raises(ConfigError, match=r"12 chat conversations give .* \(--chat-prompts"):
        conversation_windows(chat_tokenizer, CHATS, 100, 64, seed=0)


def test_a_mixture_gives_the_requested_counts(chat_tokenizer, wikitext_dir):
    """wikitext2:0.25,chat:0.75 of 8 windows: the 2 text and 6 chat windows of the pure sources."""
    data = DataConfig(dataset="wikitext2:0.25,chat:0.75", data_dir=str(wikitext_dir), split="validation")
    cal = CalibrationConfig(data=data, nsamples=8, seqlen=16, seed=3)
    windows, info = calibration_windows(chat_tokenizer, cal, conversations=CHATS)
    assert windows.shape == (8, 16)
    assert info["sources"] == [{"name": "wikitext2", "fraction": 0.25, "windows": 2},
                               {"name": "chat", "fraction": 0.75, "windows": 6}]
    assert info["conversations"]["conversations"] == 12 and info["split_used"] == "validation"
    text = calibration_windows(chat_tokenizer, CalibrationConfig(
        data=DataConfig(data_dir=str(wikitext_dir), split="validation"), nsamples=2, seqlen=16, seed=3))[0]
    chat, _ = conversation_windows(chat_tokenizer, CHATS, 6, 16, seed=3)
    expected = sorted(map(tuple, torch.cat([text, chat]).tolist()))
    assert sorted(map(tuple, windows.tolist())) == expected
    assert windows[:2].tolist() != text.tolist()  # shuffled together, not stacked
    again, _ = calibration_windows(chat_tokenizer, cal, conversations=CHATS)
    assert torch.equal(windows, again)


def test_chat_windows_from_a_file(chat_tokenizer, tmp_path):
    path = tmp_path / "chats.jsonl"
    path.write_text("".join(json.dumps({"id": i, "messages": m}) + "\n" for i, m in enumerate(CHATS)))
    cal = CalibrationConfig(data=DataConfig(dataset="chat"), nsamples=2, seqlen=16, seed=1,
                            chat=ChatConfig(file=str(path)))
    windows, info = calibration_windows(chat_tokenizer, cal)
    assert torch.equal(windows, conversation_windows(chat_tokenizer, CHATS, 2, 16, seed=1)[0])
    assert info["sources"] == [{"name": "chat", "fraction": 1.0, "windows": 2}]
    with pytest.raises(ConfigError, match="needs the dense model"):
        calibration_windows(chat_tokenizer, CalibrationConfig(data=DataConfig(dataset="chat")))


def test_seeded_self_generation_is_reproducible(chat_model, chat_tokenizer):
    prompts = [c[:1] for c in CHATS[:5]]
    chat = ChatConfig(max_new_tokens=6, batch_size=2)
    state = torch.random.get_rng_state()
    first = self_generate(chat_model, chat_tokenizer, prompts, chat, seed=0, progress=False)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's RNG is untouched
    assert first == self_generate(chat_model, chat_tokenizer, prompts, chat, seed=0, progress=False)
    assert first != self_generate(chat_model, chat_tokenizer, prompts, chat, seed=1, progress=False)
    for record, prompt in zip(first, prompts, strict=True):
        assert record["messages"][:-1] == prompt and record["messages"][-1]["role"] == "assistant"
        assert isinstance(record["finished"], bool)


def test_greedy_replies_stop_at_eos_and_ignore_padding(chat_model, chat_tokenizer):
    """A batch of left-padded prompts gets the replies each prompt gets alone."""
    prompts = [render_ids(chat_tokenizer, c[:1], add_generation_prompt=True) for c in CHATS[:3]]
    prompts[1] = prompts[1] + prompts[1][:5]  # different lengths -> padding in the batch
    batched = generate_replies(chat_model, chat_tokenizer, prompts, Decoding(max_new_tokens=5, batch_size=3),
                               progress=False)
    alone = [generate_replies(chat_model, chat_tokenizer, [p], Decoding(max_new_tokens=5), progress=False)[0]
             for p in prompts]
    assert batched == alone
    assert all(0 < len(r) <= 5 for r in batched)
    eos = chat_tokenizer.eos_token_id
    assert all(eos not in r[:-1] for r in batched)


def test_self_generated_conversations_are_cached(chat_model, chat_tokenizer, chat_model_dir, tmp_path,
                                                 monkeypatch):
    from llm_surgeon.run.chat import calibration_conversations
    from llm_surgeon.run.ppl_cache import outputs_identity

    monkeypatch.setenv("LLM_SURGEON_CACHE", str(tmp_path / "cache"))
    identity = outputs_identity(str(chat_model_dir), "float32", "cpu")
    cal = CalibrationConfig(data=DataConfig(dataset="chat"), chat=ChatConfig(max_prompts=3, max_new_tokens=4))
    records, info = calibration_conversations(cal, chat_model, chat_tokenizer, identity, progress=False)
    assert len(records) == 3 and info["cache"] == "miss" and info["source"] == "self-generated"
    assert info["prompts"] == 3 and "seconds" in info

    def no_generation(*args, **kwargs):
        raise AssertionError("generated again")

    monkeypatch.setattr("llm_surgeon.run.chat.self_generate", no_generation)
    again, info = calibration_conversations(cal, chat_model, chat_tokenizer, identity, progress=False)
    assert again == records and info["cache"] == "hit"
    other = CalibrationConfig(data=cal.data, chat=ChatConfig(max_prompts=3, max_new_tokens=5))
    with pytest.raises(AssertionError, match="generated again"):  # other settings, other key
        calibration_conversations(other, chat_model, chat_tokenizer, identity, progress=False)


@pytest.mark.parametrize(("spec", "evaluated"), [("chat", "wikitext2"), ("wikitext2:0.5,chat:0.5", "wikitext2"),
                                                 ("text:0.3,chat:0.7", "text")])
def test_data_flag_calibrates_on_the_spec_and_evaluates_on_its_text(spec, evaluated):
    from llm_surgeon.cli import build_parser
    from llm_surgeon.cli.compare import _base
    from llm_surgeon.cli.prune import build_config

    args = build_parser().parse_args(["prune", "m", "--data", spec, "--chat-prompts", "40", "--chat-tokens", "64",
                                      "--fidelity", "--fidelity-tokens", "16"])
    config = build_config(args)
    assert config.calibration.data.dataset == spec and config.evaluation.data.dataset == evaluated
    assert config.calibration.chat == ChatConfig(max_prompts=40, max_new_tokens=64)
    assert config.fidelity.enabled and config.fidelity.response_tokens == 16
    base = _base(build_parser().parse_args(["compare", "m", "--data", spec, "--methods", "magnitude",
                                            "--out", "o"]))
    assert base["calibration"]["data"]["dataset"] == spec
    assert base["evaluation"]["data"].get("dataset", "wikitext2") == evaluated
