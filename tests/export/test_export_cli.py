"""``prune --save compact|both``, ``export``, ``eval`` of compact folders, and their errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from llm_surgeon import cli
from llm_surgeon.export import load

PRUNE = ["--method", "magnitude", "--structure", "row-col", "--target-size", "0.6", "--shots", "1",
         "--seqlen", "32", "--nsamples", "4", "--eval-windows", "2", "--no-progress"]


@pytest.fixture
def no_cache(monkeypatch):
    monkeypatch.setenv("LLM_SURGEON_CACHE", "off")


def _logits(folder: Path, ids: torch.Tensor) -> torch.Tensor:
    model, _ = load(str(folder))
    with torch.no_grad():
        return model(ids).logits


@pytest.fixture(scope="module")
def pruned_both(tiny_model_dir, wikitext_dir, tmp_path_factory) -> Path:
    """``prune --save both``: zeroed model in OUT, compact model in OUT/compact."""
    out = tmp_path_factory.mktemp("both") / "out"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LLM_SURGEON_CACHE", "off")
        code = cli.main(["prune", str(tiny_model_dir), *PRUNE, "--data-dir", str(wikitext_dir),
                         "--out", str(out), "--save", "both"])
    assert code == 0
    return out


def test_prune_save_both_writes_zeroed_and_compact(pruned_both, capsys):
    report = json.loads((pruned_both / "report.json").read_text())
    compact = report["compact"]
    assert compact["folder"] == "compact" and compact["num_parameters"] < compact["original_num_parameters"]
    assert compact["real_size"] <= report["achieved_size"]
    assert json.loads((pruned_both / "run_config.json").read_text())["save"] == "both"
    assert (pruned_both / "model.safetensors").is_file()
    plan = json.loads((pruned_both / "compact" / "export.json").read_text())
    assert plan["linear_weights"] == compact["linear_weights"]
    ids = torch.randint(0, 100, (2, 12), generator=torch.Generator().manual_seed(0))
    zeroed, small = _logits(pruned_both, ids), _logits(pruned_both / "compact", ids)
    assert (zeroed - small).abs().max().item() <= 1e-5


def test_export_command_equals_prune_save_compact(pruned_both, tmp_path, capsys):
    out = tmp_path / "compact"
    assert cli.main(["export", str(pruned_both), "--format", "compact", "--out", str(out),
                     "--no-progress"]) == 0
    stdout = capsys.readouterr().out
    assert "real size" in stdout and f"output         {out}" in stdout
    for name in ("model.safetensors", "config.json"):
        assert (out / name).read_bytes() == (pruned_both / "compact" / name).read_bytes()
    assert cli.main(["export", str(pruned_both), "--out", str(out)]) == 2  # not empty
    assert "not empty" in capsys.readouterr().err
    assert cli.main(["export", str(pruned_both), "--out", str(out), "--overwrite", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["num_parameters"] > 0


def test_prune_save_compact_alone(tiny_model_dir, wikitext_dir, tmp_path, fresh_registry, no_cache, capsys):
    out = tmp_path / "out"
    assert cli.main(["prune", str(tiny_model_dir), *PRUNE, "--data-dir", str(wikitext_dir),
                     "--out", str(out), "--save", "compact"]) == 0
    assert "compact        " in capsys.readouterr().out
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "surgeon_llama" and "auto_map" in config
    assert {"report.json", "run_config.json", "export.json", "modeling_surgeon_llama.py"} <= {
        p.name for p in out.iterdir()}
    assert not (out / "compact").exists()


def test_eval_loads_a_compact_folder_without_remote_code(pruned_both, wikitext_dir, tmp_path, capsys):
    result = tmp_path / "eval.json"
    for folder in (pruned_both, pruned_both / "compact"):
        assert cli.main(["eval", str(folder), "--data-dir", str(wikitext_dir), "--seqlen", "32",
                         "--eval-windows", "2", "--no-progress", "--json", str(result)]) == 0
        ppl = json.loads(result.read_text())["perplexity"]
        if folder == pruned_both:
            zeroed_ppl = ppl
    assert ppl == pytest.approx(zeroed_ppl, rel=1e-5)


@pytest.mark.parametrize("structure", ["element", "2:4"])
def test_save_compact_of_an_unstructured_result_is_refused_before_loading(
        structure, tiny_model_dir, wikitext_dir, tmp_path, no_model_loading, capsys):
    code = cli.main(["prune", str(tiny_model_dir), "--method", "magnitude", "--structure", structure,
                     "--seqlen", "32", "--data-dir", str(wikitext_dir), "--out", str(tmp_path / "o"),
                     "--save", "compact"])
    assert code == 2
    assert "--save compact needs a structure that removes whole rows" in capsys.readouterr().err


def test_unsupported_architecture_is_named_before_loading(tmp_path, wikitext_dir, no_model_loading, capsys):
    from transformers import GPT2Config

    folder = tmp_path / "gpt2"
    GPT2Config(n_embd=16, n_layer=1, n_head=2, vocab_size=50, n_positions=64).save_pretrained(folder)
    (folder / "model.safetensors").write_bytes(b"")
    assert cli.main(["export", str(folder), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "compact export does not support model_type 'gpt2'" in err and "llama" in err
    assert not (tmp_path / "o").exists()


def test_eval_semi_structured_on_cpu_is_refused_before_loading(tiny_model_dir, wikitext_dir,
                                                                no_model_loading, capsys):
    code = cli.main(["eval", str(tiny_model_dir), "--data-dir", str(wikitext_dir), "--semi-structured"])
    assert code == 2
    assert "semi-structured 2:4 kernels run on CUDA GPUs only" in capsys.readouterr().err
