"""Run the runs of a profile, one record each, resuming where a previous invocation stopped.

Each run is executed in a fresh Python process (:mod:`bench.worker`) by default, so
that its peak RSS is its own and a crash (or the out-of-memory killer) only fails that
run. A failed run gets a record with ``status: "failed"`` and the suite moves on.
Runs that already have a successful record with the same key are skipped unless
``force`` is set.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs

from bench import provenance, records
from bench.profiles import BenchRun

log = logging.getLogger(__name__)

#: Where records, RESULTS.md and figures go by default.
DEFAULT_RESULTS = Path(__file__).resolve().parent / "results"

PruneFn = Callable[..., dict[str, Any]]


@attrs.define
class RunOptions:
    """How to run a profile.

    Attributes:
        results_dir: folder of ``runs/*.json`` records.
        force: rerun runs that already have a successful record.
        dry_run: only validate and print the plan.
        isolate: run each job in a fresh process (``False``: in this process).
        progress: show progress bars inside runs.
        timeout: seconds after which an isolated run is killed and recorded as failed.
    """

    results_dir: Path = DEFAULT_RESULTS
    force: bool = False
    dry_run: bool = False
    isolate: bool = True
    progress: bool = True
    timeout: float | None = None


@attrs.frozen
class PlannedRun:
    """A run with its normalised config, key and whether it is skipped."""

    run: BenchRun
    key: str
    skip: bool
    error: str | None = None


def select(runs: Sequence[BenchRun], only: str | None) -> list[BenchRun]:
    """Runs whose id matches ``only``: comma-separated globs, or substrings without ``*?[``."""
    if not only:
        return list(runs)
    patterns = [p.strip() for p in only.split(",") if p.strip()]

    def matches(run_id: str) -> bool:
        for pattern in patterns:
            if any(c in pattern for c in "*?["):
                if fnmatch.fnmatchcase(run_id, pattern):
                    return True
            elif pattern in run_id:
                return True
        return False

    return [r for r in runs if matches(r.id)]


def normalise(run: BenchRun) -> BenchRun:
    """``run`` with its config round-tripped through ``RunConfig`` (defaults filled in).

    Raises:
        llm_surgeon.errors.ConfigError: if the dictionary is not a valid ``RunConfig``.
    """
    from llm_surgeon.run.config import RunConfig

    config = RunConfig.from_dict(run.config).to_dict()
    return BenchRun(profile=run.profile, id=run.id, config=config, simulate=run.simulate)


def _validate(run: BenchRun) -> None:
    """Check plugin names, options and model limits before any weights are loaded."""
    from llm_surgeon.run.config import RunConfig
    from llm_surgeon.run.validate import validate_run

    validate_run(RunConfig.from_dict(run.config))


def plan(runs: Sequence[BenchRun], results_dir: Path, *, force: bool = False,
         validate: bool = True) -> list[PlannedRun]:
    """Normalise, validate and key every run; mark those with a successful record as skipped."""
    done = records.completed_keys(records.load_all(results_dir))
    planned = []
    for run in runs:
        error = None
        try:
            run = normalise(run)
            if validate:
                _validate(run)
        except Exception as exc:  # a bad run is recorded as failed, the others still run
            error = f"{type(exc).__name__}: {exc}"
        key = records.run_key(run.profile, run.id, run.config, simulate=run.simulate)
        planned.append(PlannedRun(run, key, skip=(key in done and not force), error=error))
    return planned


def _run_isolated(run: BenchRun, options: RunOptions) -> dict[str, Any]:
    """Run ``run`` in a worker process; returns the report or ``{"error", "traceback"}``."""
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        config_path, report_path = Path(tmp) / "config.json", Path(tmp) / "report.json"
        config_path.write_text(json.dumps({"config": run.config, "progress": options.progress,
                                           "simulate": run.simulate}))
        cmd = [sys.executable, "-m", "bench.worker", str(config_path), str(report_path)]
        try:
            proc = subprocess.run(cmd, cwd=provenance.REPO_ROOT, timeout=options.timeout, check=False)
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {options.timeout:g} s", "traceback": None}
        if report_path.exists():
            try:
                return json.loads(report_path.read_text())
            except ValueError as exc:
                return {"error": f"unreadable worker report: {exc}", "traceback": None}
        return {"error": f"worker exited with status {proc.returncode} and no report",
                "traceback": None}


def _run_in_process(run: BenchRun, options: RunOptions, prune_fn: PruneFn | None) -> dict[str, Any]:
    if prune_fn is None and run.simulate:
        from bench.simulate import prune_random as prune_fn
    elif prune_fn is None:
        from llm_surgeon.run.runner import prune as prune_fn
    from llm_surgeon.run.config import RunConfig

    return prune_fn(RunConfig.from_dict(run.config), progress=options.progress)


class _Provenance:
    """Git and machine information, computed once per invocation; model sizes cached."""

    def __init__(self, model_mb_fn: Callable[[dict[str, Any]], float | None] | None = None):
        self._git: dict[str, Any] | None = None
        self._machine: dict[str, dict[str, Any]] = {}
        self._model_mb_fn = model_mb_fn or (lambda c: provenance.model_mb(
            c["model"], c.get("dtype", "float32"), bool(c.get("trust_remote_code"))))

    def __call__(self, config: dict[str, Any], wall_seconds: float, with_model: bool) -> dict[str, Any]:
        if self._git is None:
            self._git = provenance.git_info()
        device = config.get("device", "cpu")
        if device not in self._machine:
            self._machine[device] = provenance.machine_info(device)
        machine = dict(self._machine[device])
        machine["load_average"] = provenance.load_average()  # after the run: > cores means shared
        return {
            "git": self._git,
            "machine": machine,
            "model_mb": self._model_mb_fn(config) if with_model else None,
            "wall_seconds": wall_seconds,
        }


def execute(planned: Sequence[PlannedRun], options: RunOptions, *, prune_fn: PruneFn | None = None,
            model_mb_fn: Callable[[dict[str, Any]], float | None] | None = None) -> list[dict[str, Any]]:
    """Run every non-skipped run, writing one record each; returns the new records.

    Args:
        planned: from :func:`plan`.
        options: see :class:`RunOptions`.
        prune_fn: replaces ``llm_surgeon.run.runner.prune`` (in-process runs only; tests).
        model_mb_fn: replaces the model-size lookup (tests).
    """
    todo = [p for p in planned if not p.skip]
    skipped = len(planned) - len(todo)
    if skipped:
        log.info("skipping %d run(s) with an existing record (use --force to rerun)", skipped)
    prov = _Provenance(model_mb_fn)
    new_records = []
    started_all = time.perf_counter()
    for i, item in enumerate(todo, start=1):
        run = item.run
        elapsed = time.perf_counter() - started_all
        eta = "" if i == 1 else f", about {elapsed / (i - 1) * (len(todo) - i + 1) / 60:.0f} min left"
        c = run.config
        log.info("[%d/%d] %s/%s: %s %s %s, %s shot(s)%s", i, len(todo), run.profile, run.id,
                 c.get("method"), c.get("structure"), c.get("target_size"), c.get("shots"), eta)
        started_at, start = records.now(), time.perf_counter()
        if item.error is not None:
            report: dict[str, Any] = {"error": item.error, "traceback": None}
        elif options.isolate and prune_fn is None:
            report = _run_isolated(run, options)
        else:
            try:
                report = _run_in_process(run, options, prune_fn)
            except Exception as exc:  # record and continue with the next run
                import traceback

                report = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        wall = time.perf_counter() - start
        ok = "error" not in report
        info = prov(run.config, wall, with_model=ok)
        if ok:
            record = records.from_report(run, item.key, report, started_at=started_at, provenance=info)
            log.info("[%d/%d] %s: ppl %s -> %s, size %.4f, %.0f s", i, len(todo), run.id,
                     _fmt(record["ppl_before"]), _fmt(record["ppl_after"]),
                     record["achieved_size"] or float("nan"), wall)
        else:
            record = records.failed(run, item.key, report["error"], started_at=started_at,
                                    provenance=info, traceback=report.get("traceback"))
            log.error("[%d/%d] %s failed: %s", i, len(todo), run.id, report["error"])
        path = records.write(options.results_dir, record)
        log.info("wrote %s", path)
        new_records.append(record)
    return new_records


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"
