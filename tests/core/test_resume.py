"""Kill a real run at chosen points, resume it, and get the uninterrupted run's exact result.

Every scenario starts ``llm-surgeon prune`` in a subprocess that pauses at a named point
(``$LLM_SURGEON_FAULT``, see :mod:`llm_surgeon.util.faults`); the test then sends it
SIGKILL (or SIGINT) from outside, resumes with ``--resume OUT`` and compares the saved
weights and the masks' hash with an uninterrupted run of the same config. The config has
every kind of state a checkpoint must carry: warm-started curvature (``nearest-kfac``),
LoRA (weights changed outside the solver, the generators), and three shots.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from llm_surgeon import cli

#: Scenario -> (fault, signal sent while paused there, extra flags). Shot 1 of the run has
#: 3 calibration passes of 4 batches (K-FAC start, one power iteration), later shots 2,
#: and every shot solves 14 scopes: batch 16 and scope 20 are in shot 2.
SCENARIOS = {
    "calibration": ("calibration-batch:16=pause", signal.SIGKILL, []),
    "solve": ("solve:20=pause", signal.SIGKILL, []),
    "checkpoint-write": ("checkpoint-write:2=pause", signal.SIGKILL, []),
    "final-save": ("final-save=pause", signal.SIGKILL, ["--checkpoints", "last"]),
    "sigint": ("solve:20=pause", signal.SIGINT, []),
}
#: Checkpoints left behind by each scenario.
LEFT = {"calibration": [1], "solve": [1], "checkpoint-write": [1], "final-save": [3], "sigint": [1]}


def run_args(model_dir: Path, data_dir: Path, out: Path) -> list[str]:
    return ["prune", str(model_dir), "--method", "surgeon", "--curvature", "nearest-kfac",
            "--iterations", "1", "--structure", "row-col", "--target-size", "0.6", "--shots", "3",
            "--lora", "--lora-steps", "1", "--data-dir", str(data_dir), "--calib-split", "validation",
            "--seqlen", "32", "--nsamples", "4", "--eval-windows", "2", "--no-progress", "--out", str(out)]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def checkpoints(out: Path) -> list[int]:
    folder = out.parent / f".{out.name}.partial" / "checkpoints"
    return sorted(int(p.name[5:]) for p in folder.glob("shot-*"))


def _wait_for(marker: Path, proc: subprocess.Popen, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not marker.exists():
        if proc.poll() is not None:
            raise AssertionError(f"run ended ({proc.returncode}) before {marker.name}: "
                                 f"{proc.stderr.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"{marker.name} not reached in {timeout} s")
        time.sleep(0.02)


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory, tiny_model_dir, wikitext_dir):
    """Every scenario's run, started together, each stopped at its point: name -> (out, rc, stderr)."""
    root = tmp_path_factory.mktemp("interrupted")
    env = {**os.environ, "LLM_SURGEON_CACHE": "off", "LLM_SURGEON_FAULT_DIR": str(root),
           "OMP_NUM_THREADS": str(torch.get_num_threads())}  # same arithmetic as this process
    procs = {}
    for name, (fault, _, extra) in SCENARIOS.items():
        out = root / name / "out"
        out.parent.mkdir()
        procs[name] = subprocess.Popen(
            [sys.executable, "-m", "llm_surgeon.cli", *run_args(tiny_model_dir, wikitext_dir, out), *extra],
            env={**env, "LLM_SURGEON_FAULT": fault, "LLM_SURGEON_FAULT_DIR": str(out.parent)},
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
        )
    results = {}
    for name, proc in procs.items():
        fault, sig, _ = SCENARIOS[name]
        out = root / name / "out"
        point, _, count = fault.partition("=")[0].partition(":")
        _wait_for(out.parent / f"{point}-{count or 1}.paused", proc)
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=120)
        results[name] = (out, proc.returncode, stderr)
    return results


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_model_dir, wikitext_dir):
    """The uninterrupted run: (model file hash, report)."""
    out = tmp_path_factory.mktemp("reference") / "out"
    mp = pytest.MonkeyPatch()
    mp.setenv("LLM_SURGEON_CACHE", "off")
    try:
        assert cli.main(run_args(tiny_model_dir, wikitext_dir, out)) == 0
    finally:
        mp.undo()
    return sha256(out / "model.safetensors"), json.loads((out / "report.json").read_text())


def test_changed_config_is_refused_naming_the_keys(interrupted, capsys):
    out = interrupted["solve"][0]
    before = checkpoints(out)
    code = cli.main(["prune", "--resume", str(out), "--shots", "4", "--nsamples", "8"])
    err = capsys.readouterr().err
    assert code == 2
    assert "shots: 3 -> 4" in err and "calibration.nsamples: 4 -> 8" in err
    assert checkpoints(out) == before


def test_a_fresh_run_over_an_interrupted_one_is_refused(interrupted, tiny_model_dir, wikitext_dir, capsys):
    out = interrupted["calibration"][0]
    code = cli.main(run_args(tiny_model_dir, wikitext_dir, out))
    assert code == 2
    err = capsys.readouterr().err
    assert "interrupted run" in err and "--resume" in err and "--overwrite" in err


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_resumed_run_is_bit_identical(scenario, interrupted, reference, monkeypatch, capsys):
    out, returncode, stderr = interrupted[scenario]
    sigint = SCENARIOS[scenario][1] == signal.SIGINT
    if sigint:  # a clean end: exit 130, the last checkpoint kept, how to go on said
        assert returncode == 130, stderr
        assert "interrupted" in stderr and f"--resume {out}" in stderr
    else:
        assert returncode == -signal.SIGKILL
    assert not out.exists()
    assert checkpoints(out) == LEFT[scenario]
    partial = out.parent / f".{out.name}.partial"
    if scenario == "checkpoint-write":
        assert [p.name for p in (partial / "checkpoints").glob(".shot-*.tmp")] == [".shot-002.tmp"]
    if scenario == "final-save":
        assert (partial / "output" / "model.safetensors").exists()
        assert not (partial / "output" / "report.json").exists()
    if sigint:
        assert not list((partial / "checkpoints").glob(".shot-*.tmp"))

    monkeypatch.setenv("LLM_SURGEON_CACHE", "off")
    assert cli.main(["prune", "--resume", str(out), "--no-progress"]) == 0, capsys.readouterr().err
    ref_hash, ref_report = reference
    report = json.loads((out / "report.json").read_text())
    assert sha256(out / "model.safetensors") == ref_hash
    assert report["mask_sha256"] == ref_report["mask_sha256"]
    for key in ("achieved_size", "ppl_before", "ppl_after"):
        assert report[key] == ref_report[key], key
    assert ([(s["achieved"], s["predicted_cost"]) for s in report["shot_log"]]
            == [(s["achieved"], s["predicted_cost"]) for s in ref_report["shot_log"]])
    assert report["resumed_after"] == [LEFT[scenario][-1]]
    left = sorted(p.name for p in out.parent.iterdir() if p.suffix != ".paused")
    assert left == ["out"]  # the work folder is gone
