"""Defects found in the architecture review (issue 13), each pinned by a test that failed before."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from llm_surgeon.data import CalibrationConfig, DataConfig
from llm_surgeon.model import ModuleState, PrunableModule
from llm_surgeon.registry import Kind, get_registry
from llm_surgeon.run.config import RunConfig
from llm_surgeon.run.validate import validate_run
from llm_surgeon.testing import check_prune, tiny_model


def test_nearest_kfac_warm_starts_from_the_previous_shot():
    session = check_prune(tiny_model("llama"), method="surgeon", curvature="nearest-kfac",
                          curvature_options={"iterations": 1}, structure="row-col",
                          target_size=0.8, shots=2)
    assert session.estimator.uses_previous
    assert session.previous_curvatures is not None  # kept for the next shot
    cold = session.estimator.estimate(session.model, session.modules(), session.batches(),
                                      progress=False)
    warm = session.estimator.estimate(session.model, session.modules(), session.batches(),
                                      previous=session.previous_curvatures, progress=False)
    assert (cold.passes, cold.info["warm_start"]) == (3, False)  # K-FAC start + one iteration
    assert (warm.passes, warm.info["warm_start"]) == (2, True)


def test_warm_start_off_keeps_no_previous_curvatures():
    session = check_prune(tiny_model("llama"), method="surgeon", curvature="nearest-kfac",
                          curvature_options={"iterations": 1, "warm_start": False},
                          structure="row-col", target_size=0.8, shots=2)
    assert not session.estimator.uses_previous and session.previous_curvatures is None


def test_curvature_device_reaches_the_estimator(tiny_model_dir, wikitext_dir):
    data = DataConfig(data_dir=str(wikitext_dir))
    config = RunConfig(model=str(tiny_model_dir), method="surgeon", curvature_device="cpu",
                       calibration=CalibrationConfig(data=data, seqlen=32))
    resolved = validate_run(config, check_model=False)
    assert resolved.curvature_config.device == "cpu"
    assert resolved.create_curvature().config.device == "cpu"
    explicit = RunConfig(model=str(tiny_model_dir), method="surgeon", curvature_device="cpu",
                         curvature_options={"device": "meta"})
    assert validate_run(explicit, check_model=False).curvature_config.device == "meta"  # option wins


def test_dense_perplexity_cache_keys_each_gguf_file(tmp_path, monkeypatch):
    from llm_surgeon.run import ppl_cache

    for name in ("a.gguf", "b.gguf"):
        (tmp_path / name).write_bytes(name.encode() * 10)
    windows = torch.zeros(2, 8, dtype=torch.long)
    keys = {ppl_cache.key(RunConfig(model=str(tmp_path / name)), windows) for name in ("a.gguf", "b.gguf")}
    assert len(keys) == 2 and None not in keys


def test_builtin_entry_points_cannot_collide_with_a_third_party_named_curvature(
        tmp_path, monkeypatch, fresh_registry):
    (tmp_path / "third_party_curv.py").write_text(textwrap.dedent("""
        from llm_surgeon import hookimpl
        @hookimpl
        def register_curvatures(register):
            register("third-party-identity", lambda: None, description="a third-party curvature")
    """), encoding="utf-8")
    info = tmp_path / "third_party_curv-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: third-party-curv\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[llm_surgeon]\ncurvature = third_party_curv\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = get_registry()
    assert registry.get(Kind.CURVATURE, "third-party-identity").distribution == "third-party-curv"
    assert registry.get(Kind.CURVATURE, "kfac").plugin == "llm_surgeon.plugins.curvature"


def test_theta_is_a_snapshot_for_float64_modules_without_bias():
    linear = nn.Linear(3, 2, bias=False).double()
    state = ModuleState.dense(PrunableModule("fc", linear, 0, "up"))
    snapshot = state.theta()
    before = snapshot.clone()
    with torch.no_grad():
        linear.weight.add_(1.0)
    assert torch.equal(snapshot, before)
    assert snapshot.data_ptr() != linear.weight.data_ptr()


def _root_conftest():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "conftest.py"
    spec = importlib.util.spec_from_file_location("_root_conftest_copy", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_default_data_folder_is_relative_to_the_repository(monkeypatch):
    monkeypatch.delenv("LLM_SURGEON_WIKITEXT_DIR", raising=False)
    repo = Path(__file__).resolve().parents[2]
    default = _root_conftest().REAL_DATA_DIR
    assert default == repo.parent / "shared" / "data" / "wikitext-2-raw"
    monkeypatch.setenv("LLM_SURGEON_WIKITEXT_DIR", "/somewhere/else")
    overridden = _root_conftest().REAL_DATA_DIR
    assert overridden == Path("/somewhere/else")


@pytest.mark.parametrize("module", ["llm_surgeon.curvature.types"])
def test_curvatures_no_longer_build_solvers(module):
    import importlib

    types = importlib.import_module(module)
    assert not hasattr(types.KroneckerCurvature, "solver")
    assert "damping" not in {f.name for f in __import__("attrs").fields(types.KroneckerCurvature)}
