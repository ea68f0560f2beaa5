"""Downstream evaluation with lm-evaluation-harness on a tiny local multiple-choice task (offline)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from llm_surgeon import cli
from llm_surgeon.data.config import TasksConfig
from llm_surgeon.data.tasks_support import (
    EvalDependencyError,
    TaskDataUnavailableError,
    TaskNotFoundError,
)
from llm_surgeon.errors import ConfigError

lm_eval = pytest.importorskip("lm_eval")

TOY = Path(__file__).resolve().parents[1] / "fixtures" / "lm_eval_toy"
SPECIALS = ["[UNK]", "[PAD]", "[BOS]", "[EOS]"]


def _docs() -> list[dict]:
    return [json.loads(line) for line in (TOY / "toy_mc.jsonl").read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def word_tokenizer():
    """A word-level tokenizer that knows every word of the toy task."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    corpus = [d["question"] + " " + " ".join(d["choices"]) for d in _docs()]
    tok.train_from_iterator(corpus, trainers.WordLevelTrainer(special_tokens=SPECIALS))
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                   bos_token="[BOS]", eos_token="[EOS]")


@pytest.fixture
def model(word_tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(word_tokenizer), hidden_size=16, intermediate_size=32,
                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                         max_position_embeddings=64, bos_token_id=word_tokenizer.bos_token_id,
                         eos_token_id=word_tokenizer.eos_token_id, pad_token_id=word_tokenizer.pad_token_id)
    return LlamaForCausalLM(config).eval()


@pytest.fixture(autouse=True)
def _quick(monkeypatch):
    """lm-eval spends ~1.5 s per run collecting torch's environment report."""
    import lm_eval.evaluator as evaluator

    monkeypatch.setattr(evaluator, "add_env_info", lambda results: None)


def _run(model, tokenizer, **kwargs):
    from llm_surgeon.data.tasks import run_tasks

    return run_tasks(model, tokenizer, TasksConfig(tasks=["toy_mc"], tasks_dir=str(TOY), **kwargs))


def test_accuracy_is_the_argmax_of_the_choices_loglikelihoods(model, word_tokenizer):
    """lm-eval's acc equals an independent computation: sum of the choice tokens' log-probs."""
    hits = 0
    with torch.no_grad():
        for doc in _docs():
            ctx = word_tokenizer.encode(doc["question"])
            scores = []
            for choice in doc["choices"]:
                cont = word_tokenizer.encode(" " + choice)
                ids = torch.tensor([ctx + cont])
                logp = torch.log_softmax(model(ids).logits[0, :-1].double(), dim=-1)
                scores.append(logp.gather(-1, ids[0, 1:, None])[-len(cont):].sum().item())
            hits += int(max(range(len(scores)), key=scores.__getitem__) == doc["label"])
    result = _run(model, word_tokenizer)
    task = result["tasks"]["toy_mc"]
    assert 0 < hits < len(_docs())
    assert task["metrics"]["acc"] == pytest.approx(hits / len(_docs()))
    assert task["n_samples"] == task["n_samples_total"] == 20
    json.dumps(result, allow_nan=False)


def test_a_model_biased_to_the_right_answers_scores_one(model, word_tokenizer):
    right = {d["choices"][d["label"]] for d in _docs()}
    bias = torch.zeros(len(word_tokenizer))
    for word in right:
        bias[word_tokenizer.convert_tokens_to_ids(word)] = 50.0
    model.lm_head.register_forward_hook(lambda _m, _i, out: out + bias)
    assert _run(model, word_tokenizer, limit=8)["tasks"]["toy_mc"]["metrics"]["acc"] == 1.0


def test_unknown_task_is_a_config_error_with_suggestions():
    from llm_surgeon.data.tasks import check_tasks

    with pytest.raises(TaskNotFoundError, match="toy_mc") as info:
        check_tasks(TasksConfig(tasks=["toy_mq"], tasks_dir=str(TOY)))
    assert isinstance(info.value, ConfigError) and info.value.suggestions[0] == "toy_mc"


def test_missing_data_names_what_is_needed(tmp_path):
    from llm_surgeon.data.tasks import check_tasks

    (tmp_path / "gone.yaml").write_text((TOY / "toy_mc.yaml").read_text()
                                        .replace("task: toy_mc", "task: toy_gone")
                                        .replace("toy_mc.jsonl", "no_such_file.jsonl"))
    with pytest.raises(TaskDataUnavailableError, match="data_files") as info:
        check_tasks(TasksConfig(tasks=["toy_gone"], tasks_dir=str(tmp_path)))
    assert "no_such_file.jsonl" in str(info.value)


def test_builtin_task_without_local_data_says_how_to_make_a_local_copy(monkeypatch):
    """The built-in piqa YAML (indexed alone), with the hub switched off: the error names its
    dataset and shows the local task YAML to write."""
    from llm_surgeon.data.tasks import check_tasks

    piqa = Path(lm_eval.__file__).parent / "tasks" / "piqa"
    with pytest.raises(TaskDataUnavailableError) as info:
        check_tasks(TasksConfig(tasks=["piqa"], tasks_dir=str(piqa)))
    message = str(info.value)
    assert "dataset_path='baber/piqa'" in message and "dataset_path: json" in message
    assert "--tasks-dir" in message


def test_missing_lm_eval_gives_the_install_hint(monkeypatch):
    from llm_surgeon.data.tasks import check_tasks

    monkeypatch.setitem(sys.modules, "lm_eval", None)
    with pytest.raises(EvalDependencyError, match=r"pip install 'llm-surgeon\[eval\]'"):
        check_tasks(TasksConfig(tasks=["toy_mc"]))


def test_eval_command_reports_task_accuracy(tmp_path, model, word_tokenizer, capsys):
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    word_tokenizer.save_pretrained(folder)
    out = tmp_path / "eval.json"
    code = cli.main(["eval", str(folder), "--no-ppl", "--tasks", "toy_mc", "--tasks-dir", str(TOY),
                     "--tasks-limit", "10", "--json", str(out), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    assert "toy_mc acc" in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["downstream"]["tasks"]["toy_mc"]["n_samples"] == 10
    assert "perplexity" not in result


def test_bad_task_fails_before_any_weights_load(tmp_path, capsys, monkeypatch):
    from llm_surgeon.model import loading

    monkeypatch.setattr(loading, "load_model", lambda *a, **k: pytest.fail("weights were loaded"))
    code = cli.main(["eval", str(tmp_path), "--no-ppl", "--tasks", "toy_mq", "--tasks-dir", str(TOY)])
    assert code == 2 and "Similar names: toy_mc" in capsys.readouterr().err


def test_prune_evaluates_the_tasks_after_pruning(tmp_path, model, word_tokenizer, wikitext_dir, capsys,
                                                 monkeypatch):
    monkeypatch.setenv("LLM_SURGEON_CACHE", "off")
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    word_tokenizer.save_pretrained(folder)
    out = tmp_path / "out"
    code = cli.main(["prune", str(folder), "--method", "magnitude", "--structure", "element",
                     "--target-size", "0.5", "--shots", "1", "--data-dir", str(wikitext_dir),
                     "--seqlen", "16", "--nsamples", "2", "--no-eval", "--tasks", "toy_mc",
                     "--tasks-dir", str(TOY), "--tasks-limit", "6", "--out", str(out), "--no-progress",
                     "--no-save-model"])
    assert code == 0, capsys.readouterr().err
    assert "tasks after    toy_mc acc" in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert report["downstream"]["tasks"]["toy_mc"]["n_samples"] == 6
    assert report["config"]["downstream"]["tasks"] == ["toy_mc"]
