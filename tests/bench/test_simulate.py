"""Simulated runs (random weights of a configuration, random tokens) and the GPU check's dry run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench import profiles, records, runner, simulate
from bench.profiles import BenchRun
from llm_surgeon.errors import ConfigError
from llm_surgeon.run.config import RunConfig

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def tiny_config(tmp_path) -> str:
    folder = tmp_path / "tiny"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 16,
        "intermediate_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "vocab_size": 64, "max_position_embeddings": 64}))
    return str(folder)


def _config(model: str, **extra) -> RunConfig:
    return RunConfig.from_dict({"model": model, "method": "surgeon", "structure": "row-col",
                                "target_size": 0.8, "shots": 1,
                                "calibration": {"nsamples": 4, "seqlen": 16, "batch_size": 2},
                                "evaluation": {"enabled": False, "seqlen": 16}, **extra})


def test_random_model_and_tokens_are_seeded(tiny_config):
    a, b = simulate.random_model(tiny_config, seed=3), simulate.random_model(tiny_config, seed=3)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    assert simulate.random_model(tiny_config, layers=1).config.num_hidden_layers == 1
    tokens = simulate.random_calibration(64, 4, 16, seed=1)
    assert tokens.shape == (4, 16) and int(tokens.max()) < 64
    assert torch.equal(tokens, simulate.random_calibration(64, 4, 16, seed=1))


def test_prune_random_prunes_and_says_so(tiny_config):
    report = simulate.prune_random(_config(tiny_config), progress=False)
    assert report["simulated"] and report["achieved_size"] == pytest.approx(0.8, abs=0.02)
    assert report["ppl_after"] is None
    with pytest.raises(ConfigError, match="evaluation switched off"):
        simulate.prune_random(_config(tiny_config, evaluation={"enabled": True}), progress=False)


def test_a_simulated_bench_run_is_recorded_as_such(tiny_config, tmp_path):
    run = BenchRun("test", "sim", _config(tiny_config).to_dict(), simulate=True)
    planned = runner.plan([run], tmp_path)
    assert planned[0].key != records.run_key("test", "sim", planned[0].run.config)
    options = runner.RunOptions(results_dir=tmp_path, isolate=False, progress=False)
    [record] = runner.execute(planned, options, model_mb_fn=lambda c: None)
    assert record["status"] == "ok" and record["simulated"]


def test_the_scale_profile_is_simulated_at_7b_widths():
    runs = profiles.expand(profiles.get("scale"))
    assert {r.id for r in runs} == {"surgeon-rowcol-shot1", "surgeon-element-shot1"} and all(r.simulate for r in runs)
    config = json.loads((REPO / profiles.SCALE_MODEL / "config.json").read_text())
    assert (config["hidden_size"], config["intermediate_size"], config["num_attention_heads"],
            config["num_hidden_layers"]) == (4096, 11008, 32, 2)


def test_device_check_dry_run_writes_every_section(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable, "OMP_NUM_THREADS": "1",
           "LLM_SURGEON_CACHE": "off"}
    result = subprocess.run(["bash", "bench/device_check.sh", "--dry-run"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    sections = {name: json.loads((tmp_path / f"{name}.json").read_text())
                for name in ("cuda_tests", "prune", "nccl")}
    assert all(s["ok"] and s["dry_run"] for s in sections.values())
    runs = sections["prune"]["runs"]
    assert set(runs) == {"surgeon-rowcol-0.8", "surgeon-element-0.5", "surgeon-2of4-0.5"}
    assert all(r["achieved_size"] == pytest.approx(r["target_size"], abs=0.02) for r in runs.values())
    assert sections["nccl"]["report"]["distributed"]["world_size"] == 2
    assert sections["cuda_tests"]["tests"] > 0  # collected (and skipped without a GPU)
