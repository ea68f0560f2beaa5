"""Distributed runs under torchrun (gloo, 2 ranks, one thread each) against one process.

One torchrun job prunes every case of ``dist_job.CASES`` (tiny Llama and OPT models,
surgeon row-col / element / 2:4, nearest-kfac, SparseGPT); the same cases run here in
one process. Masks must be identical, weights equal to 1e-6 (norm-relative, float64
statistics) and every rank must end with the same weights. Two more jobs go through
the command line: the console script under torchrun, and ``-m llm_surgeon`` with a
method that fails on rank 1.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from llm_surgeon import cli

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import dist_job  # noqa: E402

FAULT_PLUGIN = HERE.parent / "fixtures" / "fault_plugin"
#: Seconds a test job may take (torchrun's start and two interpreters included).
JOB_TIMEOUT = 600


def torchrun(*args: str, **env: str) -> subprocess.CompletedProcess:
    """``torchrun --nproc-per-node 2`` on a free port, one thread per rank, short timeouts."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
           "--rdzv-backend", "c10d", "--rdzv-endpoint", "localhost:0", "--monitor-interval", "0.2",
           *args]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "LLM_SURGEON_DIST_TIMEOUT": "60",
                "LLM_SURGEON_CACHE": "off", **env}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=JOB_TIMEOUT, env=full_env)


@pytest.fixture(scope="module")
def job(tmp_path_factory) -> Path:
    """One torchrun job over every case and the collectives; its output folder."""
    out = tmp_path_factory.mktemp("dist-job")
    result = torchrun(str(HERE / "dist_job.py"), str(out), "collectives", *dist_job.CASES)
    assert result.returncode == 0, result.stderr[-4000:]
    return out


def _load(path: Path) -> dict:
    return torch.load(path, weights_only=False)


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return float((a - b).norm() / a.norm().clamp_min(1e-300))


@pytest.mark.parametrize("case", list(dist_job.CASES))
def test_two_ranks_match_one_process(job, case):
    torch.set_num_threads(1)
    single = dist_job.run_case(case)
    ranks = [_load(job / f"{case}.rank{r}.pt") for r in range(2)]
    # Every rank ends with the same masks (after every shot) and the same weights.
    assert ranks[0]["weights_sha256"] == ranks[1]["weights_sha256"]
    per_shot = [[s["info"]["mask_sha256"] for s in r["report"]["shot_log"]] for r in ranks]
    assert per_shot[0] == per_shot[1]
    # ... which are the masks of one process, and its weights up to the reduction order.
    assert per_shot[0] == [s["info"]["mask_sha256"] for s in single["report"]["shot_log"]]
    assert ranks[0]["report"]["mask_sha256"] == single["report"]["mask_sha256"]
    tolerance = 1e-6 if dist_job.CASES[case][-1] == "float64" else 2e-5
    worst = max(_relative(single["state"][k], ranks[0]["state"][k]) for k in single["state"])
    assert worst <= tolerance, worst
    report = ranks[0]["report"]
    assert report["achieved_size"] == pytest.approx(single["report"]["achieved_size"])
    assert report["distributed"]["world_size"] == 2 and report["distributed"]["backend"] == "gloo"
    assert report["calibration"]["windows_per_rank"] == [4, 4]
    for shot in report["shot_log"]:
        traffic = shot["info"]["communication"]
        assert traffic["mb"]["statistics"] > 0 and traffic["mb"]["weights"] > 0
    assert "distributed" not in single["report"]


def test_shared_input_moments_travel_once(job):
    # K-FAC in float64: q/k/v and gate/up share one input moment, reduced once; each sum
    # travels whole at these sizes (one block of rows), after one int64 token count and
    # one int64 flag per module and moment (which sums the ranks share).
    report = _load(job / "llama-surgeon-rowcol.rank0.pt")["report"]
    shared = {"q": "qkv", "k": "qkv", "v": "qkv", "gate": "gate-up", "up": "gate-up"}
    inputs = {(m["layer"], shared.get(m["role"], m["role"])): m["shape"][1] for m in report["modules"]}
    elements = sum(d * d for d in inputs.values()) + sum(m["shape"][0] ** 2 for m in report["modules"])
    expected = 8 * elements + 8 + 8 * 2 * len(report["modules"])
    for shot in report["shot_log"]:
        assert shot["info"]["communication"]["mb"]["statistics"] * 2**20 == expected
        assert shot["info"]["communication"]["calls"]["statistics"] == 2 + len(inputs) + len(report["modules"])


def test_collectives(job):
    results = [_load(job / f"collectives.rank{r}.pt") for r in range(2)]
    expected = [dist_job.collectives(r) for r in range(2)]  # one process: the identity
    for key in ("symmetric", "stack", "plain"):
        total = expected[0][key] + expected[1][key]
        for r in range(2):
            torch.testing.assert_close(results[r][key], total)
    assert torch.equal(results[0]["symmetric"], results[0]["symmetric"].T)
    for r in range(2):
        assert torch.equal(results[r]["broadcast"], torch.full((4,), 1.0))
        assert results[r]["sum"] == 3 and results[r]["max"] == 1.0
        assert results[r]["gather"] == [0, 1] and results[r]["object"] == "from 1"
    assert results[0]["shard"].tolist() == [0, 1, 2] and results[1]["shard"].tolist() == [3, 4, 5, 6]
    # Only the upper triangle travels: rows i0..i0+2 from the diagonal on, 8 bytes each.
    sent = sum((min(37, i0 + 2) - i0) * (37 - i0) * 8 for i0 in range(0, 37, 2))
    traffic = results[0]["symmetric_traffic"]
    assert traffic["mb"]["statistics"] * 2**20 == sent < 37 * 37 * 8
    assert traffic["calls"]["statistics"] == 19


def _prune_args(model_dir: Path, data_dir: Path, out: Path, *extra: str) -> list[str]:
    return ["prune", str(model_dir), "--method", "surgeon", "--structure", "row-col",
            "--target-size", "0.7", "--shots", "2", "--data", "wikitext2", "--data-dir", str(data_dir),
            "--calib-split", "validation", "--nsamples", "4", "--seqlen", "32", "--eval-windows", "4",
            "--curvature-dtype", "float64", "--no-progress", "--out", str(out), *extra]


def test_console_script_under_torchrun_matches_one_process(tmp_path, tiny_model_dir, wikitext_dir):
    script = shutil.which("llm-surgeon", path=str(Path(sys.executable).parent)) or shutil.which("llm-surgeon")
    assert script, "the llm-surgeon console script is not installed"
    torch.set_num_threads(1)
    os.environ["LLM_SURGEON_CACHE"] = "off"
    assert cli.main(_prune_args(tiny_model_dir, wikitext_dir, tmp_path / "one")) == 0
    result = torchrun("--no-python", script, *_prune_args(tiny_model_dir, wikitext_dir, tmp_path / "two"))
    assert result.returncode == 0, result.stderr[-4000:]
    one = json.loads((tmp_path / "one" / "report.json").read_text())
    two = json.loads((tmp_path / "two" / "report.json").read_text())
    assert two["mask_sha256"] == one["mask_sha256"]
    assert two["ppl_before"] == pytest.approx(one["ppl_before"], rel=1e-9)
    assert two["ppl_after"] == pytest.approx(one["ppl_after"], rel=1e-6)
    assert two["distributed"]["world_size"] == 2
    w1, w2 = load_file(tmp_path / "one" / "model.safetensors"), load_file(tmp_path / "two" / "model.safetensors")
    assert max(_relative(w1[k], w2[k]) for k in w1) <= 1e-6
    # Only rank 0 wrote: one folder, no leftovers of a second writer.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "two"]
    assert result.stdout.count("achieved size") == 1  # the summary, printed by rank 0 only


def test_a_failing_rank_ends_the_job_and_is_named(tmp_path, tiny_model_dir, wikitext_dir):
    start = time.monotonic()
    result = torchrun("-m", "llm_surgeon", *_prune_args(tiny_model_dir, wikitext_dir, tmp_path / "out",
                                                        "--method", "fault"),
                      PYTHONPATH=os.pathsep.join([str(FAULT_PLUGIN), os.environ.get("PYTHONPATH", "")]),
                      LLM_SURGEON_FAULT_RANK="1")
    elapsed = time.monotonic() - start
    assert result.returncode == 1, result.stderr[-4000:]
    assert "llm-surgeon: rank 1/2 failed: RuntimeError: injected fault on rank 1" in result.stderr
    assert elapsed < 120  # the other rank did not wait for its collective timeout (60 s) ... much
    assert not (tmp_path / "out").exists()
