"""Run :mod:`fresh_load` in an isolated interpreter: no PYTHONPATH, own modules cache, offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).with_name("fresh_load.py")


def load_fresh(manifest: dict[str, dict[str, Any]], work: Path) -> dict[str, Any]:
    """Load every folder of ``manifest`` in one fresh ``python -I`` process.

    Returns ``RESULTS.json`` (see ``fresh_load.py``) plus ``modules_cache``: the private
    Hugging Face modules cache the remote code was imported from.
    """
    work.mkdir(parents=True, exist_ok=True)
    (work / "manifest.json").write_text(json.dumps(manifest))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env |= {"HF_MODULES_CACHE": str(work / "modules"), "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_VERBOSITY": "error", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-I", str(SCRIPT), str(work / "manifest.json")]
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads((work / "RESULTS.json").read_text())
    report["modules_cache"] = str(work / "modules")
    return report
