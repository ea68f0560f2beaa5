"""``sparsegpt`` and ``wanda`` end to end through ``llm-surgeon prune`` on tiny Llama and OPT."""

from __future__ import annotations

import json

import pytest
import torch
from registration import ensure_registered, unregister

from llm_surgeon.cli import main


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory, make_tiny_model, tiny_tokenizer):
    """Saved tiny Llama and OPT folders (with the tiny tokenizer)."""
    dirs = {}
    for kind in ("llama", "opt"):
        folder = tmp_path_factory.mktemp(f"tiny-{kind}")
        model = make_tiny_model(kind, **({"intermediate_size": 32} if kind == "llama" else {"ffn_dim": 32}))
        model.save_pretrained(folder)
        tiny_tokenizer.save_pretrained(folder)
        dirs[kind] = folder
    return dirs


@pytest.fixture
def registered():
    name = ensure_registered("element", "n:m")
    yield
    unregister(name)


@pytest.mark.parametrize("kind", ["llama", "opt"])
@pytest.mark.parametrize("method", ["sparsegpt", "wanda"])
@pytest.mark.parametrize("structure", ["element", "2:4"])
def test_prune_cli(registered, model_dirs, wikitext_dir, tmp_path, kind, method, structure):
    out = tmp_path / "out"
    code = main([
        "prune", str(model_dirs[kind]), "--method", method, "--structure", structure,
        "--target-size", "0.5", "--shots", "1", "--data-dir", str(wikitext_dir),
        "--calib-split", "validation", "--nsamples", "4", "--seqlen", "32", "--batch-size", "2",
        "--eval-windows", "2", "--out", str(out), "--no-progress",
    ])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["method"] == method
    assert report["achieved_size"] == pytest.approx(0.5)
    assert report["ppl_after"] is not None and report["ppl_after"] > 1
    from transformers import AutoModelForCausalLM

    pruned = AutoModelForCausalLM.from_pretrained(out)
    for module in report["modules"]:
        w = pruned.get_submodule(module["name"]).weight.detach()
        assert int(w.count_nonzero()) == w.numel() // 2, module["name"]
        if structure == "2:4":
            groups = (w != 0).reshape(w.shape[0], -1, 4).sum(dim=2)
            assert torch.equal(groups, torch.full_like(groups, 2)), module["name"]
