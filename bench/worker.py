"""Run one pruning job in a fresh process: ``python -m bench.worker CONFIG_JSON REPORT_JSON``.

The benchmark runner starts one worker per run, so that each run's peak RSS is its
own and a crash cannot take the whole suite down. The worker reads a ``RunConfig``
dictionary, calls :func:`llm_surgeon.run.runner.prune` (or, for a simulated run,
:func:`bench.simulate.prune_random`) and writes the report to
``REPORT_JSON``; on failure it writes ``{"error": ..., "traceback": ...}`` instead and
exits with status 1.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        sys.stderr.write("usage: python -m bench.worker CONFIG_JSON REPORT_JSON\n")
        return 2
    config_path, report_path = Path(argv[0]), Path(argv[1])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        from llm_surgeon.run.config import RunConfig
        from llm_surgeon.run.runner import prune

        payload = json.loads(config_path.read_text())
        config = RunConfig.from_dict(payload["config"])
        if payload.get("simulate"):
            from bench.simulate import prune_random as prune
        report = prune(config, progress=payload.get("progress", True))
    except BaseException as exc:  # report every failure to the parent, then exit non-zero
        report_path.write_text(json.dumps({
            "error": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc(),
        }))
        logging.getLogger("bench.worker").error("run failed: %s", exc)
        return 1
    report_path.write_text(json.dumps(report, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
