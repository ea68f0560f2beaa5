"""2:4 semi-structured conversion: pattern detection and the errors a CPU-only machine gives.

The conversion itself needs an Ampere-or-newer GPU; ``bench/device_check.sh`` runs it there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from llm_surgeon.errors import ConfigError
from llm_surgeon.export import is_two_four, semi_structured
from llm_surgeon.export.semi_structured import check_device
from llm_surgeon.methods.loop import run_shots
from llm_surgeon.testing import make_session

REPO = Path(__file__).resolve().parents[2]


def test_two_four_pattern():
    w = torch.tensor([[1.0, 0.0, 2.0, 0.0, 0.0, 0.0, 0.0, 3.0]])
    assert is_two_four(w)
    assert not is_two_four(torch.tensor([[1.0, 1.0, 2.0, 0.0]]))  # 3 of 4
    assert not is_two_four(torch.zeros(2, 6))  # width not a multiple of 4
    groups = torch.tensor([[0.0, 1.0, 0.0, 2.0], [3.0, 0.0, 4.0, 0.0], [5.0, 6.0, 0.0, 0.0]])
    assert is_two_four(groups)
    groups[1, 1] = 1.0
    assert not is_two_four(groups)


def test_a_two_four_prune_is_recognised(make_tiny_model):
    model = make_tiny_model("llama")
    run_shots(*make_session(model, method="magnitude", structure="2:4", target_size=0.5))
    assert all(is_two_four(m.weight) for name, m in model.named_modules()
               if isinstance(m, torch.nn.Linear) and ".layers." in name)


def test_cpu_is_refused_with_a_clear_message(make_tiny_model):
    model = make_tiny_model("llama")
    with pytest.raises(ConfigError, match="run on CUDA GPUs only .* Ampere.*the model is on cpu"):
        semi_structured(model)
    with pytest.raises(ConfigError, match="CUDA GPUs only"):
        check_device("cpu", torch.float16)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_cuda_requested_without_cuda():
    with pytest.raises(ConfigError, match="CUDA is not available"):
        check_device("cuda", torch.float16)


def _device_check(out: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OUT": str(out), "PYTHON": sys.executable}
    return subprocess.run(["bash", str(REPO / "bench" / "device_check.sh"), *args], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)


def test_device_check_dry_run_writes_its_plan(tmp_path):
    proc = _device_check(tmp_path, "--dry-run")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads((tmp_path / "semi_structured.json").read_text())
    assert result["dry_run"] is True and result["status"] == "ok"
    assert {c["shape"][0] for c in result["plan"]["matmuls"]} >= {576, 1536}
    assert result["plan"]["dtypes"] == ["float16", "bfloat16"]
    # the source tree was imported through the script's shim, not the installed package
    assert Path(result["llm_surgeon"]).resolve() == (REPO / "core" / "__init__.py").resolve()
