"""The ``deploy`` benchmark: what a pruned model costs to store, load and run.

::

    python -m bench deploy prune --data-dir DATA --work DIR     # the zeroed models (DEPLOY_RUNS)
    python -m bench deploy measure --data-dir DATA --work DIR   # one record, all variants
    python -m bench deploy render [--readme README.md]          # DEPLOY.md (and the README block)

``measure`` saves the dense model as a float32 Hugging Face folder, exports every zeroed model
of ``DEPLOY_RUNS`` found in ``--work`` (or given by ``--pruned NAME=DIR``) to a compact folder,
and measures dense, zeroed and compact side by side, each in a fresh process with plain
transformers (:mod:`bench.deploy_worker`): safetensors bytes, parameters, peak RSS after
loading, prefill of one 512-token window, greedy decode tokens/s; then checks every compact
model against its zeroed model on the evaluation windows (max |Δlogit|, perplexity). The load
average is stored before and after each measurement: timings need a quiet machine.
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import provenance, records

log = logging.getLogger(__name__)

#: Records of this benchmark, under the results folder.
DEPLOY_DIR = "deploy"
#: The zeroed models the benchmark compares: name -> (method, structure, target size). The
#: protocol is the ``cpu`` profile's (5 shots, 32 x 512 calibration tokens of the validation
#: split, 64 test windows of 512).
DEPLOY_RUNS: dict[str, tuple[str, str, float]] = {
    "surgeon-rowcol-0.8": ("surgeon", "row-col", 0.8),
    "surgeon-rowcol-0.7": ("surgeon", "row-col", 0.7),
    # HOOK (issue 14): the `dims` structure removes whole MLP units and heads. The runs below
    # are pruned and measured once a structure named `dims` is registered; until then
    # `prune` skips them with a message.
    "surgeon-dims-0.8": ("surgeon", "dims", 0.8),
    "surgeon-dims-0.7": ("surgeon", "dims", 0.7),
}
README_MARKERS = ("<!-- deploy:start -->", "<!-- deploy:end -->")


def _run_config(name: str, data_dir: str | None, out: Path, model: str) -> Any:
    from bench.profiles import _base
    from llm_surgeon.run.config import RunConfig

    method, structure, target = DEPLOY_RUNS[name]
    data = {**_base(nsamples=32, cal_seqlen=512, windows=64), "model": model, "method": method,
            "structure": structure, "target_size": target, "shots": 5, "out": str(out)}
    for section in ("calibration", "evaluation"):
        data[section]["data"]["data_dir"] = data_dir
    return RunConfig.from_dict(data)


def prune_all(work: Path, data_dir: str | None, model: str) -> list[str]:
    """Prune every run of :data:`DEPLOY_RUNS` whose structure is registered into ``work/NAME``."""
    from llm_surgeon.registry.registry import Kind, get_registry
    from llm_surgeon.run.runner import prune

    structures = get_registry().names(Kind.STRUCTURE)
    done = []
    for name, (_, structure, _) in DEPLOY_RUNS.items():
        out = work / name
        if structure not in structures:
            log.warning("skipping %s: structure %r is not registered (yet)", name, structure)
        elif (out / "report.json").is_file():
            log.info("%s exists; not pruned again", out)
            done.append(name)
        else:
            prune(_run_config(name, data_dir, out, model), progress=False)
            done.append(name)
    return done


def _worker(task: dict[str, Any], work: Path) -> dict[str, Any]:
    """Run one :mod:`bench.deploy_worker` task in a fresh process; the load average around it."""
    with tempfile.TemporaryDirectory(prefix="deploy-", dir=work) as tmp:
        task_path, result_path = Path(tmp) / "task.json", Path(tmp) / "result.json"
        task_path.write_text(json.dumps(task))
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        env |= {"OMP_NUM_THREADS": str(task["threads"]), "HF_MODULES_CACHE": str(Path(tmp) / "modules"),
                "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
        before = provenance.load_average()
        start = time.perf_counter()
        cmd = [sys.executable, "-m", "bench.deploy_worker", str(task_path), str(result_path)]
        subprocess.run(cmd, cwd=provenance.REPO_ROOT, env=env, check=True)
        result = json.loads(result_path.read_text())
    result |= {"load_average_before": before, "load_average_after": provenance.load_average(),
               "wall_seconds": time.perf_counter() - start}
    return result


def _export(zeroed: Path, out: Path) -> dict[str, Any]:
    from llm_surgeon.export import export_folder

    start = time.perf_counter()
    plan = export_folder(str(zeroed), out, overwrite=True)
    summary = {k: v for k, v in plan.to_dict().items() if k != "layers"}
    return summary | {"seconds": time.perf_counter() - start}


def _prepare(work: Path, dense_spec: str, data_dir: str | None, windows: int) -> tuple[Path, Path]:
    """The dense float32 folder and the evaluation windows ``(windows, 512)`` as a ``.pt`` file."""
    import torch
    from transformers import AutoTokenizer

    from llm_surgeon.data.config import DataConfig, EvalConfig
    from llm_surgeon.data.windows import eval_windows
    from llm_surgeon.model import load_model, save_model

    dense = work / "dense"
    if not (dense / "config.json").is_file():
        save_model(*load_model(dense_spec), dense)
    tokenizer = AutoTokenizer.from_pretrained(dense)
    ev = EvalConfig(data=DataConfig(dataset="wikitext2", data_dir=data_dir, split="test"),
                    seqlen=512, windows=windows)
    path = work / "windows.pt"
    torch.save(eval_windows(tokenizer, ev), path)
    return dense, path


def _pruned_report(folder: Path) -> dict[str, Any]:
    report = json.loads((folder / "report.json").read_text())
    keep = ("method", "structure", "target_size", "achieved_size", "shots", "ppl_before", "ppl_after")
    return {k: report.get(k) for k in keep} | {"calibration": report.get("calibration", {}).get("split_used")}


def measure(work: Path, pruned: dict[str, Path], *, dense_spec: str, data_dir: str | None,
            threads: int = 2, repeats: int = 5, decode_tokens: int = 64, windows: int = 64,
            results_dir: Path) -> Path:
    """Measure dense, zeroed and compact models side by side; write one record, return its path."""
    started = records.now()
    dense, windows_path = _prepare(work, dense_spec, data_dir, windows)
    settings = {"threads": threads, "repeats": repeats, "decode_tokens": decode_tokens,
                "windows": windows, "seqlen": 512, "dense": dense_spec}
    variants = [("dense", "dense", dense, None)]
    exports = {}
    for name, zeroed in pruned.items():
        exports[name] = _export(zeroed, work / f"{name}-compact")
        variants += [(name, "zeroed", zeroed, name), (name, "compact", work / f"{name}-compact", name)]
    rows = []
    for name, kind, folder, run in variants:
        log.info("measuring %s (%s)", name, kind)
        task = {"kind": "measure", "folder": str(folder), "windows": str(windows_path),
                "threads": threads, "repeats": repeats, "decode_tokens": decode_tokens}
        rows.append({"name": name, "kind": kind, "folder": str(folder), "run": run, **_worker(task, work)})
    equivalence = {}
    for name, zeroed in pruned.items():
        log.info("comparing %s compact with zeroed on %d windows", name, windows)
        task = {"kind": "compare", "folder": str(work / f"{name}-compact"), "reference": str(zeroed),
                "windows": str(windows_path), "threads": threads}
        result = _worker(task, work)
        result["ppl"] = math.exp(sum(result["window_nll"]) / result["windows"])
        result["reference_ppl"] = math.exp(sum(result["reference_window_nll"]) / result["windows"])
        equivalence[name] = result
    record = {"record_version": 1, "benchmark": "deploy", "started_at": started, "finished_at": records.now(),
              "settings": settings, "variants": rows, "exports": exports, "equivalence": equivalence,
              "pruned": {name: _pruned_report(folder) for name, folder in pruned.items()},
              "git": provenance.git_info(), "machine": provenance.machine_info("cpu")}
    record["machine"]["load_average"] = provenance.load_average()
    return _write(results_dir, record)


def _write(results_dir: Path, record: dict[str, Any]) -> Path:
    folder = Path(results_dir) / DEPLOY_DIR
    folder.mkdir(parents=True, exist_ok=True)
    stamp = record["finished_at"].replace(":", "").replace("-", "").split("+")[0]
    path = folder / f"deploy__{stamp}Z.json"
    path.write_text(json.dumps(record, indent=1) + "\n")
    return path


def latest(results_dir: Path) -> dict[str, Any] | None:
    """The newest deploy record, or ``None``."""
    paths = sorted((Path(results_dir) / DEPLOY_DIR).glob("deploy__*.json"))
    return json.loads(paths[-1].read_text()) if paths else None
