"""The GPU path: bfloat16/float16 weights on CUDA, float32 statistics, float64 factorisations,
factors on the GPU or on the host. Skipped without a GPU; ``bench/device_check.sh`` runs them."""

from __future__ import annotations

import pytest
import torch

from llm_surgeon.data.config import CalibrationConfig, EvalConfig
from llm_surgeon.model.tiny import random_tokens, tiny_model
from llm_surgeon.run.config import RunConfig
from llm_surgeon.run.runner import prune

pytestmark = pytest.mark.cuda


def _run(family: str, structure: str, target: float, *, dtype: torch.dtype, device: str,
         curvature_device: str | None = None, method: str = "surgeon") -> tuple[dict, torch.nn.Module]:
    model = tiny_model(family, hidden=32, intermediate=64, layers=2, vocab=64).to(dtype)
    calibration = random_tokens(model, n=8, seqlen=16, seed=1)
    config = RunConfig(model=f"tiny-{family}", method=method, structure=structure, target_size=target,
                       shots=2, device=device, curvature_device=curvature_device,
                       calibration=CalibrationConfig(nsamples=8, seqlen=16, batch_size=4),
                       evaluation=EvalConfig(enabled=False))
    return prune(config, model=model, calibration=calibration, progress=False), model


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize(("structure", "target"), [("row-col", 0.7), ("element", 0.5), ("2:4", 0.5)])
def test_half_precision_weights_on_the_gpu(dtype, structure, target):
    report, model = _run("llama", structure, target, dtype=dtype, device="cuda")
    assert next(model.parameters()).dtype == dtype and next(model.parameters()).is_cuda
    assert report["achieved_size"] == pytest.approx(target, abs=0.02)
    assert report["mask_size"] == pytest.approx(target, abs=0.02)
    with torch.no_grad():
        logits = model(random_tokens(model, 2, 8, seed=2).to("cuda")).logits
    assert torch.isfinite(logits.float()).all()


@pytest.mark.parametrize("structure", ["row-col", "element"])
def test_factors_on_the_host_give_the_masks_of_factors_on_the_gpu(structure):
    on_gpu, _ = _run("llama", structure, 0.7, dtype=torch.float32, device="cuda")
    on_host, _ = _run("llama", structure, 0.7, dtype=torch.float32, device="cuda", curvature_device="cpu")
    assert on_host["mask_sha256"] == on_gpu["mask_sha256"]


@pytest.mark.parametrize(("family", "structure"), [("llama", "row-col"), ("opt", "element")])
def test_gpu_float32_run_matches_the_cpu_run(family, structure):
    gpu, gpu_model = _run(family, structure, 0.7, dtype=torch.float32, device="cuda")
    cpu, cpu_model = _run(family, structure, 0.7, dtype=torch.float32, device="cpu")
    assert gpu["mask_sha256"] == cpu["mask_sha256"]
    for (name, a), b in zip(cpu_model.state_dict().items(), gpu_model.state_dict().values(), strict=True):
        assert torch.allclose(a, b.cpu(), rtol=1e-4, atol=1e-5), name


def test_sparsegpt_in_bfloat16_on_the_gpu():
    report, model = _run("llama", "element", 0.5, dtype=torch.bfloat16, device="cuda", method="sparsegpt")
    assert report["achieved_size"] == pytest.approx(0.5, abs=0.01)
    assert all(torch.isfinite(p.float()).all() for p in model.parameters())
