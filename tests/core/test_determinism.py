"""The same config and seed twice: identical masks, weights and report figures."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from llm_surgeon import cli


def _figures(report: Any, key: str = "") -> Any:
    """``report`` without what may differ between identical runs: timings, memory, paths."""
    if isinstance(report, dict):
        return {k: _figures(v, k) for k, v in report.items()
                if "seconds" not in k and "rss" not in k and k not in ("out", "versions")}
    if isinstance(report, list):
        return [_figures(v, key) for v in report]
    return report


def test_two_runs_with_the_same_seed_are_identical(tiny_model_dir, wikitext_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("LLM_SURGEON_CACHE", "off")
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        assert cli.main(["prune", str(tiny_model_dir), "--structure", "row-col", "--target-size", "0.7",
                         "--shots", "2", "--fisher-type", "sampled", "--lora", "--lora-steps", "2",
                         "--lora-dropout", "0.1", "--data-dir", str(wikitext_dir), "--seqlen", "32",
                         "--nsamples", "4", "--eval-windows", "2", "--eval-every-shot", "--seed", "3",
                         "--no-progress", "--out", str(out)]) == 0
        report = json.loads((out / "report.json").read_text())
        runs.append((hashlib.sha256((out / "model.safetensors").read_bytes()).hexdigest(), report))
    (hash_a, report_a), (hash_b, report_b) = runs
    assert hash_a == hash_b
    assert report_a["mask_sha256"] == report_b["mask_sha256"]
    assert _figures(report_a) == _figures(report_b)
    assert report_a["shot_log"][0]["info"]["ppl"] == report_b["shot_log"][0]["info"]["ppl"]
