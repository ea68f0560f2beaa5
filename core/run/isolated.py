"""One run in a fresh process, so that its peak memory is its own and a crash is contained."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import sys
import time
from pathlib import Path
from typing import Any

from llm_surgeon.run.config import RunConfig
from llm_surgeon.util.io import write_json

logger = logging.getLogger(__name__)


def execute(config: RunConfig, progress: bool) -> dict[str, Any]:
    """Run one combination in this process; the runner's report plus GPU peak memory."""
    import torch

    from llm_surgeon.run.runner import prune

    cuda = torch.device(config.device).type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    # A comparison is many short runs and has no --resume: no checkpoints.
    report = prune(config, progress=progress, overwrite=True, checkpoints="off")
    if cuda:
        report["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return report


def child(config_dict: dict[str, Any], result_path: str, progress: bool, log_level: int) -> None:
    """Entry point of a run's process: write ``{"report": ...}`` or ``{"error": ...}``."""

    logging.basicConfig(level=log_level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        result = {"report": execute(RunConfig.from_dict(config_dict), progress)}
    except Exception as exc:  # reported in the table; the comparison goes on
        logging.getLogger(__name__).exception("run failed")
        result = {"error": f"{type(exc).__name__}: {exc}"}
    write_json(result_path, result)


def run_isolated(config: RunConfig, *, in_process: bool, progress: bool, scratch: Path) -> dict[str, Any]:
    """Report of one combination (``{"error": ...}`` if it failed)."""
    if in_process:
        try:
            return {"report": execute(config, progress)}
        except Exception as exc:
            logger.exception("run %s/%s failed", config.method, config.structure)
            return {"error": f"{type(exc).__name__}: {exc}"}

    result_path = scratch / f"result-{os.getpid()}-{time.monotonic_ns()}.json"
    ctx = multiprocessing.get_context("spawn")
    proc = ctx.Process(target=child, args=(config.to_dict(), str(result_path), progress,
                                            logging.getLogger("llm_surgeon").getEffectiveLevel()))
    proc.start()
    proc.join()
    try:
        return json.loads(result_path.read_text())
    except (OSError, ValueError):
        return {"error": f"run process exited with code {proc.exitcode} and no result"}
    finally:
        result_path.unlink(missing_ok=True)
