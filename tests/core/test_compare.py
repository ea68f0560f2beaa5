"""``llm-surgeon compare``: the matrix of runs, its table and its JSON."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest

from llm_surgeon.cli import main
from llm_surgeon.cli.compare import _shots
from llm_surgeon.errors import ConfigError
from llm_surgeon.run.comparison import render_markdown, summarize

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins" / "baselines"))
from registration import ensure_registered, unregister  # noqa: E402


def _args(model_dir, data_dir, out, *extra):
    return ["compare", str(model_dir), "--data-dir", str(data_dir), "--calib-split", "validation",
            "--nsamples", "4", "--seqlen", "32", "--batch-size", "2", "--eval-windows", "2",
            "--out", str(out), "--no-progress", *extra]


def test_shots_spec():
    assert _shots(None, ["a", "b"]) == {"a": None, "b": None}
    assert _shots("3", ["a", "b"]) == {"a": 3, "b": 3}
    assert _shots("b=2", ["a", "b"]) == {"a": None, "b": 2}
    with pytest.raises(ConfigError):
        _shots("c=2", ["a", "b"])
    with pytest.raises(ConfigError):
        _shots("many", ["a"])


def test_summarize_and_markdown():
    report = {"shots": 2, "ppl_before": 10.0, "ppl_after": 12.5, "achieved_size": 0.5,
              "peak_rss_mb": 321.0, "seconds_total": 9.0,
              "shot_log": [{"seconds": {"total": 3.0, "eval": 1.0}}, {"seconds": {"total": 2.5}}]}
    row = summarize(report)
    assert row["prune_seconds"] == pytest.approx(4.5) and row["ppl"] == 12.5
    result = {"model": "m", "dense_ppl": 10.0,
              "settings": {"calibration": {"nsamples": 4, "seqlen": 32, "seed": 0,
                                           "data": {"split": "validation"}},
                           "evaluation": {"windows": 2, "seqlen": 32, "data": {"split": "test"}},
                           "device": "cpu", "dtype": "float32"},
              "runs": [{"method": "wanda", "structure": "2:4", "target_size": 0.5, **row},
                       {"method": "x", "structure": "row-col", "target_size": 0.5,
                        "status": "skipped", "error": "a | b"}]}
    md = render_markdown(result)
    assert "| wanda | 2:4 | 0.5 | 2 | 0.5000 | 12.500 | 4.5 | 321 | ok |" in md
    assert "skipped: a / b" in md and "Dense perplexity: 10.000" in md


def test_unknown_method_is_a_usage_error(tiny_model_dir, wikitext_dir, tmp_path, capsys):
    code = main(_args(tiny_model_dir, wikitext_dir, tmp_path / "o", "--methods", "sparsgpt"))
    assert code == 2
    assert "sparsgpt" in capsys.readouterr().err


def test_compare_in_process(tiny_model_dir, wikitext_dir, tmp_path, capsys):
    name = ensure_registered("element", "n:m")
    try:
        out = tmp_path / "cmp"
        code = main(_args(tiny_model_dir, wikitext_dir, out, "--methods", "sparsegpt,wanda,magnitude",
                          "--structures", "element,2:4", "--target-sizes", "0.5",
                          "--shots", "magnitude=2", "--method-option", "sparsegpt:blocksize=8",
                          "--in-process"))
    finally:
        unregister(name)
    assert code == 0
    result = json.loads((out / "compare.json").read_text())
    runs = {(r["method"], r["structure"]): r for r in result["runs"]}
    assert len(runs) == 6
    for (method, _), r in runs.items():
        assert r["status"] == "ok", r
        assert r["achieved_size"] == pytest.approx(0.5, abs=0.02)
        assert r["ppl"] > 1 and r["ppl_before"] == pytest.approx(result["dense_ppl"])
        assert r["prune_seconds"] > 0 and r["peak_rss_mb"] > 0
        assert r["shots"] == (2 if method == "magnitude" else 1)
        assert Path(r["report"]).is_file()
    assert json.loads(Path(runs[("sparsegpt", "element")]["report"]).read_text())["config"][
        "method_options"] == {"blocksize": 8}
    md = (out / "compare.md").read_text()
    assert md.count("\n| ") == 7  # header + 6 rows
    assert "| sparsegpt | 2:4 |" in capsys.readouterr().out


def test_compare_skips_unsupported_combinations(tiny_model_dir, wikitext_dir, tmp_path):
    name = ensure_registered("element", "row-col")
    try:
        out = tmp_path / "cmp"
        code = main(_args(tiny_model_dir, wikitext_dir, out, "--methods", "wanda",
                          "--structures", "row-col,element", "--target-sizes", "0.75", "--in-process"))
    finally:
        unregister(name)
    assert code == 0
    runs = json.loads((out / "compare.json").read_text())["runs"]
    assert [r["status"] for r in runs] == ["skipped", "ok"]
    assert "row-col" in runs[0]["error"]


def test_compare_in_a_subprocess(tiny_model_dir, wikitext_dir, tmp_path):
    """The default mode: each run in its own process, so peak memory is per run."""
    from llm_surgeon.registry import Kind, get_registry

    if "magnitude" not in get_registry().names(Kind.METHOD) or \
            "element" not in get_registry().names(Kind.STRUCTURE):
        pytest.skip("magnitude/element not registered yet")
    out = tmp_path / "cmp"
    code = main(_args(tiny_model_dir, wikitext_dir, out, "--methods", "magnitude",
                      "--structures", "element", "--target-sizes", "0.6", "--shots", "1"))
    assert code == 0
    (run,) = json.loads((out / "compare.json").read_text())["runs"]
    assert run["status"] == "ok" and run["achieved_size"] == pytest.approx(0.6, abs=0.02)


def test_parser_defaults():
    from llm_surgeon.cli import compare

    parser = argparse.ArgumentParser()
    compare.add_parser(parser.add_subparsers())
    args = parser.parse_args(["compare", "m", "--methods", "a,b", "--out", "o"])
    assert args.methods == ["a", "b"] and args.structures == ["element"] and args.target_sizes == [0.5]
