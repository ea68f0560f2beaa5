"""Fidelity checks on tiny models: KL and greedy match against brute force, the dense model
against itself, the runner's ``--fidelity`` and ``--data chat``, and ``eval --fidelity``."""

from __future__ import annotations

import json
import math

import pytest
import torch

from llm_surgeon import cli
from llm_surgeon.data import FidelityConfig, build_reference, measure_fidelity
from llm_surgeon.data.fidelity import kl_and_match
from llm_surgeon.data.reference import fidelity_set, load_reference, response_logprobs
from llm_surgeon.errors import ConfigError

SMALL = FidelityConfig(enabled=True, prompts=3, response_tokens=4, questions=3, answer_tokens=4)


def test_kl_and_match_against_brute_force():
    gen = torch.Generator().manual_seed(0)
    dense = torch.log_softmax(torch.randn(5, 7, generator=gen, dtype=torch.float64), -1)
    model = torch.log_softmax(torch.randn(5, 7, generator=gen, dtype=torch.float64), -1)
    kl, match = kl_and_match(dense, model)
    for t in range(5):
        p, q = dense[t].exp().tolist(), model[t].exp().tolist()
        brute = sum(pi * (math.log(pi) - math.log(qi)) for pi, qi in zip(p, q, strict=True))
        assert kl[t].item() == pytest.approx(brute, rel=1e-12)
        assert bool(match[t]) == (max(range(7), key=p.__getitem__) == max(range(7), key=q.__getitem__))
    same_kl, same_match = kl_and_match(dense, dense)
    assert torch.all(same_kl == 0) and torch.all(same_match)
    # A token the dense model gives no mass contributes nothing, even where the model has -inf.
    hard = torch.tensor([[0.0, -float("inf")]])
    assert kl_and_match(hard, torch.log(torch.tensor([[0.5, 0.5]])))[0].item() == pytest.approx(0.6931471805599453)


def test_response_logprobs_are_the_teacher_forced_next_token_distributions(chat_model):
    prompt, response = [3, 5, 7], [11, 13, 17]
    lp = response_logprobs(chat_model, prompt, response)
    with torch.no_grad():
        full = torch.log_softmax(chat_model(torch.tensor([prompt + response])).logits[0].float(), -1)
    assert lp.shape == (3, full.shape[-1])
    torch.testing.assert_close(lp, full[2:5], rtol=1e-5, atol=1e-5)


def test_the_dense_model_against_itself_has_kl_0_and_match_1(chat_model, chat_tokenizer, tmp_path):
    reference = build_reference(chat_model, chat_tokenizer, SMALL, tmp_path / "ref", progress=False)
    assert load_reference(tmp_path / "ref") is not None
    result = measure_fidelity(chat_model, chat_tokenizer, SMALL, reference, progress=False)
    assert result["kl"] == 0.0 and result["match_rate"] == 1.0
    assert result["positions"] == sum(len(r) for r in reference.responses)
    assert 3 <= result["positions"] <= 12 and result["heldout_prompts"] == 3 and result["questions"] == 3
    assert [h["model"] for h in result["heldout"]] == [h["dense"] for h in result["heldout"]]
    assert all(a["model"] == a["dense"] and a["correct"] == a["dense_correct"] for a in result["answers"])
    assert result["question_accuracy"] == result["dense_question_accuracy"]

    pruned = type(chat_model)(chat_model.config).eval()
    pruned.load_state_dict(chat_model.state_dict())
    with torch.no_grad():
        for layer in pruned.model.layers:
            layer.mlp.down_proj.weight[:, ::2] = 0
    worse = measure_fidelity(pruned, chat_tokenizer, SMALL, reference, progress=False)
    assert worse["kl"] > 0 and 0.0 <= worse["match_rate"] <= 1.0
    # The mean over positions, recomputed from the stored dense log-probabilities.
    fs = fidelity_set(chat_tokenizer, SMALL)
    kls = torch.cat([kl_and_match(reference.logprobs(i), response_logprobs(pruned, p, r))[0]
                     for i, (p, r) in enumerate(zip(fs.prompt_ids, reference.responses, strict=True))])
    assert worse["kl"] == pytest.approx(float(kls.mean()), rel=1e-12)


def test_without_a_reference_only_questions_are_scored(chat_model, chat_tokenizer):
    result = measure_fidelity(chat_model, chat_tokenizer, SMALL, progress=False)
    assert result["kl"] is None and result["match_rate"] is None and result["dense_question_accuracy"] is None
    assert result["questions"] == 3 and result["answers"][0]["question"].startswith("What is the capital")


def test_chat_without_a_template_fails_before_loading(tiny_model_dir, wikitext_dir, no_model_loading, capsys):
    code = cli.main(["prune", str(tiny_model_dir), "--method", "magnitude", "--data", "chat",
                     "--data-dir", str(wikitext_dir), "--seqlen", "32"])
    assert code == 2
    assert "has no chat template, which chat calibration need" in capsys.readouterr().err
    code = cli.main(["prune", str(tiny_model_dir), "--method", "magnitude", "--fidelity",
                     "--data-dir", str(wikitext_dir), "--seqlen", "32"])
    assert code == 2 and "fidelity checks need" in capsys.readouterr().err
    code = cli.main(["eval", str(tiny_model_dir), "--fidelity", "--data-dir", str(wikitext_dir)])
    assert code == 2 and "has no chat template" in capsys.readouterr().err


@pytest.mark.parametrize(("args", "message"), [
    (["--data", "wikitext2:0.5,chat:0.4"], "sum to 0.9"),
    (["--data", "chat", "--chat-file", "missing.jsonl"], "cannot read"),
    (["--data", "chat:0.5,wikitext2:0.5", "--nsamples", "1"], "gets no window"),
    (["--eval-split", "test", "--chat-temperature", "0"], "temperature must be > 0"),
])
def test_bad_chat_settings_fail_before_loading(args, message, chat_model_dir, wikitext_dir, no_model_loading,
                                               capsys):
    code = cli.main(["prune", str(chat_model_dir), "--method", "magnitude", "--data-dir", str(wikitext_dir),
                     "--seqlen", "32", *args])
    assert code == 2
    assert message in capsys.readouterr().err


def test_prune_with_a_chat_mixture_and_fidelity(chat_model_dir, wikitext_dir, tmp_path, fresh_registry,
                                                monkeypatch, capsys):
    """The issue's flow on a tiny model: self-generated chat in a mixture, fidelity after pruning."""
    monkeypatch.setenv("LLM_SURGEON_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    args = ["prune", str(chat_model_dir), "--method", "wanda", "--structure", "element", "--target-size", "0.5",
            "--shots", "1", "--data", "wikitext2:0.5,chat:0.5", "--data-dir", str(wikitext_dir),
            "--nsamples", "4", "--seqlen", "32", "--eval-windows", "2", "--chat-prompts", "6",
            "--chat-tokens", "8", "--fidelity", "--fidelity-prompts", "3", "--fidelity-tokens", "4",
            "--fidelity-questions", "3", "--out", str(out), "--no-progress"]
    assert cli.main(args) == 0, capsys.readouterr().err
    stdout = capsys.readouterr().out
    assert "windows: wikitext2 2, chat 2" in stdout and "KL to dense" in stdout
    report = json.loads((out / "report.json").read_text())
    cal = report["calibration"]
    assert cal["sources"] == [{"name": "wikitext2", "fraction": 0.5, "windows": 2},
                              {"name": "chat", "fraction": 0.5, "windows": 2}]
    assert cal["conversations"]["source"] == "self-generated" and cal["conversations"]["cache"] == "miss"
    assert cal["conversations"]["file"] == "calibration_conversations.jsonl"
    saved = [json.loads(line) for line in (out / "calibration_conversations.jsonl").read_text().splitlines()]
    assert len(saved) == 6 and all(r["messages"][-1]["role"] == "assistant" for r in saved)
    fidelity = report["fidelity"]
    assert fidelity["kl"] > 0 and 0 <= fidelity["match_rate"] <= 1 and fidelity["questions"] == 3
    assert fidelity["reference"]["cache"] == "miss" and "generation" in report["seconds"]

    # A second run reuses the conversations and the dense reference from the cache.
    assert cli.main([*args, "--overwrite"]) == 0
    again = json.loads((out / "report.json").read_text())
    assert again["calibration"]["conversations"]["cache"] == "hit"
    assert again["fidelity"]["reference"]["cache"] == "hit"
    assert again["fidelity"]["kl"] == fidelity["kl"]

    # eval of the output folder finds its dense model in run_config.json.
    assert cli.main(["eval", str(out), "--data-dir", str(wikitext_dir), "--seqlen", "32", "--eval-windows", "2",
                     "--fidelity", "--fidelity-prompts", "3", "--fidelity-tokens", "4", "--fidelity-questions",
                     "3", "--json", str(tmp_path / "eval.json"), "--no-progress"]) == 0
    evaluated = json.loads((tmp_path / "eval.json").read_text())
    assert evaluated["fidelity"]["kl"] == pytest.approx(fidelity["kl"], rel=1e-6)
    assert evaluated["fidelity"]["reference"]["model"] == str(chat_model_dir)


def test_eval_of_the_dense_model_against_itself(chat_model_dir, wikitext_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LLM_SURGEON_CACHE", "off")
    code = cli.main(["eval", str(chat_model_dir), "--reference", str(chat_model_dir), "--data-dir",
                     str(wikitext_dir), "--seqlen", "32", "--eval-windows", "1", "--fidelity",
                     "--fidelity-prompts", "2", "--fidelity-tokens", "3", "--fidelity-questions", "2",
                     "--json", str(tmp_path / "eval.json"), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    assert "KL to dense 0.0000 nats/token, greedy match 100.0%" in capsys.readouterr().out
    result = json.loads((tmp_path / "eval.json").read_text())["fidelity"]
    assert result["kl"] == 0.0 and result["match_rate"] == 1.0 and result["reference"]["cache"] == "off"


def test_eval_fidelity_flags_need_fidelity(chat_model_dir, capsys):
    assert cli.main(["eval", str(chat_model_dir), "--reference", str(chat_model_dir)]) == 2
    assert "need --fidelity" in capsys.readouterr().err


def test_a_reference_for_other_settings_is_refused(chat_model, chat_tokenizer, tmp_path):
    reference = build_reference(chat_model, chat_tokenizer, SMALL, tmp_path, progress=False)
    with pytest.raises(ConfigError, match="other fidelity settings"):
        measure_fidelity(chat_model, chat_tokenizer, FidelityConfig(prompts=2, questions=1), reference,
                         progress=False)
