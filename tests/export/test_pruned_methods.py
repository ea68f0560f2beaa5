"""Compact exports of tiny models pruned by every structured method, checked from outside.

Each model is pruned with ``row-col`` by magnitude, L-OBD, K-OBD and surgeon, saved zeroed and
compact, and the compact folder is loaded with plain transformers in a fresh process without
llm-surgeon. Its logits must equal the zeroed model's, and the weights of its Linears must be
exactly the real size found by brute force: every prunable weight that is nonzero and has a
nonzero gradient (a weight whose removal changes nothing has an exactly zero gradient).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from isolated import load_fresh
from torch import nn

from llm_surgeon.export import CompactPlan, load, save_compact
from llm_surgeon.methods.loop import run_shots
from llm_surgeon.model import adapter_for, save_model
from llm_surgeon.model.tiny import random_tokens
from llm_surgeon.testing import make_session

ATOL = 1e-5
FAMILIES = ("llama", "opt")  # llama: 4 query heads on 2 key/value heads (GQA), tied embeddings
METHODS = ("magnitude", "lobd", "kobd", "surgeon")
CASES = [(family, method) for family in FAMILIES for method in METHODS]


@dataclass
class Pruned:
    zeroed: nn.Module
    zeroed_dir: Path
    compact_dir: Path
    ids: torch.Tensor
    logits: torch.Tensor
    real_size: int
    plan: CompactPlan


def real_size(model: nn.Module, ids: torch.Tensor) -> int:
    """Prunable weights that are nonzero and matter (nonzero gradient of random logit sums)."""
    prunable = [pm.module.weight for pm in adapter_for(model).prunable_modules(model)]
    model.zero_grad()
    logits = model(ids).logits
    probe = torch.randn(logits.shape, generator=torch.Generator().manual_seed(0))
    (logits * probe).sum().backward()
    needed = sum(int(((w != 0) & (w.grad != 0)).sum()) for w in prunable)
    model.zero_grad()
    return needed


@pytest.fixture(scope="module")
def pruned(make_tiny_model, tiny_tokenizer, tmp_path_factory) -> dict[tuple[str, str], Pruned]:
    root = tmp_path_factory.mktemp("pruned")
    out = {}
    for family, method in CASES:
        model = make_tiny_model(family, seed=3)
        calibration = random_tokens(model, 4, 16, seed=1)
        session = make_session(model, method=method, structure="row-col", calibration=calibration,
                               target_size=0.55, shots=2)
        run_shots(*session)
        name = f"{family}-{method}"
        ids = random_tokens(model, 3, 12, seed=2)
        with torch.no_grad():
            logits = model(ids).logits
        size = real_size(model, ids)
        save_model(model, tiny_tokenizer, root / f"{name}-zeroed")
        plan = save_compact(model, tiny_tokenizer, root / f"{name}-compact")
        torch.save({"ids": ids}, root / f"{name}.inputs.pt")
        out[family, method] = Pruned(model, root / f"{name}-zeroed", root / f"{name}-compact",
                                     ids, logits, size, plan)
    return out


@pytest.fixture(scope="module")
def fresh(pruned: dict, tmp_path_factory) -> dict[str, Any]:
    manifest = {
        f"{family}-{method}": {"folder": str(p.compact_dir), "plain": False, "generate": False,
                               "inputs": str(p.compact_dir.parent / f"{family}-{method}.inputs.pt")}
        for (family, method), p in pruned.items()
    }
    return load_fresh(manifest, tmp_path_factory.mktemp("fresh-methods"))


@pytest.mark.parametrize(("family", "method"), CASES)
def test_fresh_plain_transformers_gives_the_zeroed_logits(pruned, fresh, family, method):
    p, res = pruned[family, method], fresh["cases"][f"{family}-{method}"]
    assert "error" not in res, res.get("error")
    logits = torch.load(res["output"])["logits"]
    assert (logits - p.logits).abs().max().item() <= ATOL
    assert res["class"].startswith("Surgeon")
    assert Path(res["module_file"]).resolve().is_relative_to(Path(fresh["modules_cache"]).resolve())
    assert fresh["llm_surgeon_blocked"]


@pytest.mark.parametrize(("family", "method"), CASES)
def test_parameter_count_is_the_real_size(pruned, fresh, family, method):
    p, res = pruned[family, method], fresh["cases"][f"{family}-{method}"]
    prunable = adapter_for(p.zeroed).prunable_modules(p.zeroed)
    nonzero = sum(int((pm.module.weight != 0).sum()) for pm in prunable)
    assert res["linear_weights"] == p.real_size <= nonzero  # dead weights are gone too
    assert p.plan.linear_weights == p.real_size and res["num_parameters"] == p.plan.num_parameters
    assert p.plan.real_size == pytest.approx(p.real_size / sum(pm.numel for pm in prunable))
    others = sum(t.numel() for t in p.zeroed.parameters()) - sum(pm.numel for pm in prunable)
    # biases of removed heads and units go with them; nothing else outside the Linears
    assert res["num_parameters"] - res["linear_weights"] <= others
    assert res["num_parameters"] - res["linear_weights"] >= others - sum(
        pm.module.bias.numel() for pm in prunable if pm.module.bias is not None)


@pytest.mark.parametrize(("family", "method"), CASES)
def test_library_load_matches_and_zeroed_folder_reloads(pruned, family, method):
    p = pruned[family, method]
    compact, _ = load(str(p.compact_dir))
    zeroed, _ = load(str(p.zeroed_dir))
    with torch.no_grad():
        assert (compact(p.ids).logits - p.logits).abs().max().item() <= ATOL
        assert torch.equal(zeroed(p.ids).logits, p.logits)
