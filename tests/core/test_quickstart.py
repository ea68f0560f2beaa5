"""``llm-surgeon quickstart``: the recipe runs surgeon and magnitude at the same size and says so."""

from __future__ import annotations

import json

from llm_surgeon import cli
from llm_surgeon.cli import quickstart


def test_quickstart_compares_surgeon_with_magnitude(tiny_model_dir, wikitext_dir, tmp_path, monkeypatch,
                                                    capsys, fresh_registry):
    monkeypatch.setenv("LLM_SURGEON_CACHE", "off")
    monkeypatch.setitem(quickstart.RECIPE, "seqlen", 32)  # the tiny model's context is 128
    monkeypatch.setitem(quickstart.RECIPE, "nsamples", 4)
    monkeypatch.setitem(quickstart.RECIPE, "eval_windows", 4)
    out = tmp_path / "qs"
    code = cli.main(["-q", "quickstart", str(tiny_model_dir), "--data-dir", str(wikitext_dir),
                     "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "At 80% of the prunable weights, surgeon keeps perplexity" in captured.out
    result = json.loads((out / "compare.json").read_text())
    runs = {r["method"]: r for r in result["runs"]}
    assert set(runs) == {"surgeon", "magnitude"} and runs["surgeon"]["shots"] == 2
    assert abs(runs["surgeon"]["achieved_size"] - runs["magnitude"]["achieved_size"]) < 0.02
    assert result["data_sources"]["evaluation"].endswith("wiki.test.raw")
    assert captured.err == ""  # -q: no progress bars, no log lines


def test_quickstart_defaults_to_the_shipped_wikitext(tmp_path):
    import argparse

    args = argparse.Namespace(model="smollm2-135m", data_dir=None, out=str(tmp_path), overwrite=False,
                              device=None, no_progress=True)
    compare_args = quickstart.compare_args(args)
    assert compare_args.data == "wikitext2-bundled" and compare_args.calib_split == "validation"
    assert compare_args.methods == ["surgeon", "magnitude"] and compare_args.target_sizes == [0.8]
