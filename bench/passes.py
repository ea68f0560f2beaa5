"""Calibration passes against their floor, side by side in one process.

``python -m bench passes`` loads the model and the calibration windows of a profile (the
``cpu`` protocol by default: 32 x 512 tokens of WikiText-2 validation) and times, in
alternating rounds so that both see the same machine load:

* ``floor``: one forward and one backward pass over the windows, parameters frozen
  (no weight gradients), the gradient flowing to the input embeddings, no hooks;
* ``kfac``: the K-FAC estimator's pass (``A = sum a a^T`` and ``G = sum g g^T`` of every
  prunable Linear), i.e. the passes of one surgeon shot.

Each round's ``kfac / floor`` ratio (of wall-clock seconds, and of the process's CPU
seconds, which a shared machine inflates less), the statistics' own seconds, the RSS
high-water marks and the load average are printed and stored as one JSON record under
``results/passes/``. Timings are only comparable within a record (or between records
made under the same load); with ``OMP_NUM_THREADS=1`` the CPU-time ratio barely depends
on other jobs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import time
from pathlib import Path
from typing import Any

from bench import provenance


def _rss_mb() -> dict[str, float]:
    """Current and peak resident memory of this process, MiB."""
    current = 0.0
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                current = int(line.split()[1]) / 1024
    return {"rss_mb": current, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


class _RssSampler:
    """The highest current RSS seen while the body runs (sampled every ``interval`` s)."""

    def __init__(self, interval: float = 0.05) -> None:
        import threading

        self.interval, self.peak = interval, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, _rss_mb()["rss_mb"])

    def __enter__(self) -> _RssSampler:
        self.peak = _rss_mb()["rss_mb"]
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _floor(model, batches, progress: bool) -> dict[str, Any]:
    from llm_surgeon.curvature import TokenObserver, run_pass

    stats = run_pass(model, [], batches, TokenObserver(), gradients=True, progress=progress,
                     desc="floor")
    return {"seconds": stats.seconds, "tokens": stats.tokens}


def _kfac(model, modules, batches, progress: bool) -> dict[str, Any]:
    from llm_surgeon.plugins.curvature.kfac import KFACCurvature

    result = KFACCurvature().estimate(model, modules, batches, progress=progress)
    out = {"seconds": result.seconds_passes, "seconds_statistics": result.info["seconds_statistics"],
           "seconds_means": result.seconds_algebra, "curvature_mb": result.nbytes / 2**20}
    del result
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Load, then ``args.rounds`` rounds of floor and K-FAC passes; the record."""
    import torch

    from bench import profiles
    from llm_surgeon.data import CalibrationConfig, DataConfig, calibration_windows
    from llm_surgeon.model import adapter_for, load_model

    base = profiles.get(args.profile).base["calibration"]
    cal = CalibrationConfig(data=DataConfig(dataset="wikitext2", data_dir=args.data_dir, split="validation"),
                            nsamples=args.nsamples or base["nsamples"], seqlen=args.seqlen or base["seqlen"],
                            seed=base["seed"])
    torch.set_float32_matmul_precision("highest")  # as in a run
    model, tokenizer = load_model(args.model, dtype="float32", device="cpu")
    windows, _ = calibration_windows(tokenizer, cal)
    batches = [windows[i : i + 1] for i in range(len(windows))]
    modules = adapter_for(model).prunable_modules(model)
    record: dict[str, Any] = {"model": args.model, "nsamples": cal.nsamples, "seqlen": cal.seqlen,
                              "after_load": _rss_mb(), "rounds": []}
    for r in range(args.rounds):
        entry: dict[str, Any] = {"round": r + 1, "load_before": provenance.load_average()}
        for mode in args.modes:
            cpu = time.process_time()
            with _RssSampler() as rss:
                if mode == "floor":
                    entry["floor"] = _floor(model, batches, args.progress)
                else:
                    entry["kfac"] = _kfac(model, modules, batches, args.progress)
            entry[mode].update(_rss_mb(), cpu_seconds=time.process_time() - cpu, sampled_peak_rss_mb=rss.peak)
        if "floor" in entry and "kfac" in entry:
            entry["ratio"] = entry["kfac"]["seconds"] / entry["floor"]["seconds"]
            entry["cpu_ratio"] = entry["kfac"]["cpu_seconds"] / entry["floor"]["cpu_seconds"]
        entry["load_after"] = provenance.load_average()
        record["rounds"].append(entry)
        print(_line(entry), flush=True)
    record.update(git=provenance.git_info(), machine=provenance.machine_info("cpu"),
                  finished_at=dt.datetime.now(dt.timezone.utc).isoformat())
    return record


def _line(entry: dict[str, Any]) -> str:
    parts = [f"round {entry['round']}"]
    for mode in ("floor", "kfac"):
        if mode in entry:
            parts.append(f"{mode} {entry[mode]['seconds']:.1f} s (RSS peak {entry[mode]['sampled_peak_rss_mb']:.0f} MB)")
    if "kfac" in entry:
        parts.append(f"statistics {entry['kfac']['seconds_statistics']:.1f} s")
    if "ratio" in entry:
        parts.append(f"ratio {entry['ratio']:.3f} (CPU time {entry['cpu_ratio']:.3f})")
    parts.append(f"load {entry['load_before']} -> {entry['load_after']}")
    return ", ".join(parts)


def write(results: Path, record: dict[str, Any]) -> Path:
    """Store the record as ``results/passes/<model>__<UTC time>.json``."""
    folder = results / "passes"
    folder.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.fromisoformat(record["finished_at"]).strftime("%Y%m%dT%H%M%SZ")
    name = "".join(c if c.isalnum() or c in "-._" else "_" for c in record["model"])
    path = folder / f"{name}__{stamp}.json"
    path.write_text(json.dumps(record, indent=1) + "\n")
    return path


def add_parser(sub: Any, default_results: Path, data_env: str) -> None:
    """The ``passes`` subcommand of ``python -m bench``."""
    p = sub.add_parser("passes", help="time the calibration passes against their floor")
    p.add_argument("--profile", default="cpu", help="calibration size of this profile (default: cpu)")
    p.add_argument("--nsamples", type=int, help="override the number of windows")
    p.add_argument("--seqlen", type=int, help="override the window length")
    p.add_argument("--model", default=os.environ.get("BENCH_MODEL", "smollm2-135m"))
    p.add_argument("--data-dir", metavar="DIR", default=os.environ.get(data_env))
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds (default: 2)")
    p.add_argument("--modes", default="floor,kfac", type=lambda s: [m for m in s.split(",") if m],
                   help="comma-separated, in order: floor, kfac")
    p.add_argument("--results", type=Path, default=default_results)
    p.add_argument("--no-record", action="store_true", help="print only")
    p.add_argument("--no-progress", dest="progress", action="store_false")


def main(args: argparse.Namespace) -> int:
    """Run the subcommand; 2 for bad arguments."""
    bad = [m for m in args.modes if m not in ("floor", "kfac")]
    if bad or args.rounds < 1:
        print(f"passes: unknown mode(s) {bad}" if bad else "passes: --rounds must be >= 1")
        return 2
    start = time.perf_counter()
    record = run(args)
    record["wall_seconds"] = time.perf_counter() - start
    if not args.no_record:
        print(write(args.results, record))
    return 0
