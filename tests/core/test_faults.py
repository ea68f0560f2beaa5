"""Injected faults and broken inputs: each ends in one clear message, nothing half-written.

NaN or infinity in one module's statistics, a factor no damping makes positive definite,
a plugin raising in each of its hooks, truncated or corrupt model files, a full disk
during the final save, empty or too short calibration data, and file permissions.
"""

from __future__ import annotations

import importlib
import json
import os
import stat
from pathlib import Path

import pytest
import torch

from llm_surgeon import cli
from llm_surgeon.curvature import passes
from llm_surgeon.curvature.types import KroneckerCurvature
from llm_surgeon.errors import NumericalError
from llm_surgeon.methods.loop import run_shots
from llm_surgeon.testing import make_session, tiny_model
from llm_surgeon.util import faults
from llm_surgeon.util.io import write_json

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
MODULE = "model.layers.1.self_attn.o_proj"


def _small_run(model_dir: Path, data_dir: Path, out: Path, *extra: str) -> list[str]:
    return ["prune", str(model_dir), "--structure", "row-col", "--target-size", "0.7", "--shots", "2",
            "--data-dir", str(data_dir), "--calib-split", "validation", "--seqlen", "32",
            "--nsamples", "4", "--eval-windows", "2", "--no-progress", "--out", str(out), *extra]


@pytest.fixture(autouse=True)
def _no_cache(monkeypatch):
    monkeypatch.setenv("LLM_SURGEON_CACHE", "off")
    faults._parsed = None  # fault counters start afresh in every test


def _after_shot_one(monkeypatch, where: str, value: float) -> list:
    """From shot 2 on, the statistics of ``MODULE`` get ``value`` (the model is untouched)."""
    armed: list = []
    index_of = {}

    def poison(t: torch.Tensor) -> torch.Tensor:
        t = t.clone()
        t.view(-1)[0] = value
        return t

    forward, grad = passes._Pass.forward_hook, passes._Pass.grad_hook

    def forward_hook(self, index, module, args, output):
        index_of.setdefault(self, {pm.name: i for i, pm in enumerate(self.modules)})
        if armed and where == "activations" and index == index_of[self].get(MODULE):
            args = (poison(args[0]),)
        return forward(self, index, module, args, output)

    def grad_hook(self, index, x, g):
        if armed and where == "gradients" and index == index_of[self].get(MODULE):
            g = poison(g)
        return grad(self, index, x, g)

    monkeypatch.setattr(passes._Pass, "forward_hook", forward_hook)
    monkeypatch.setattr(passes._Pass, "grad_hook", grad_hook)
    return armed


@pytest.mark.parametrize("where", ["activations", "gradients"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_statistics_name_the_module_and_the_shot(where, value, monkeypatch):
    armed = _after_shot_one(monkeypatch, where, value)
    method, session = make_session(tiny_model("llama"), target_size=0.7, shots=3)
    with pytest.raises(NumericalError) as info:
        run_shots(method, session, hooks=[lambda s, log: armed.append(log.shot)])
    message = str(info.value)
    assert f"module {MODULE}" in message and "shot 2 of 3" in message and "non-finite" in message


def test_a_factor_singular_after_every_damping_escalation_is_named(monkeypatch):
    method, session = make_session(tiny_model("llama"), target_size=0.7, shots=3)
    estimator = session.estimator
    estimate = estimator.estimate
    shot = {"n": 0}

    def indefinite(*args, **kwargs):
        result = estimate(*args, **kwargs)
        shot["n"] += 1
        if shot["n"] == 2:  # A = -1e12 I: damping up to 1e5 x mean(diag) cannot fix it
            c = result.curvatures[MODULE]
            g, a = c.factors[0]
            result.curvatures[MODULE] = KroneckerCurvature(((g, -1e12 * torch.eye(len(a), dtype=a.dtype)),),
                                                           c.d_out, c.d_in)
        return result

    monkeypatch.setattr(estimator, "estimate", indefinite)
    with pytest.raises(NumericalError) as info:
        run_shots(method, session)
    message = str(info.value)
    assert MODULE in message and "shot 2 of 3" in message and "6 escalations" in message


@pytest.fixture
def raising_plugin(monkeypatch, fresh_registry):
    """The plugin of ``tests/fixtures/raising_plugin`` on ``sys.path``."""
    monkeypatch.syspath_prepend(str(FIXTURES / "raising_plugin"))
    importlib.invalidate_caches()


@pytest.mark.parametrize(("hook", "item"), [("run_shot", "method 'raising-surgeon'"),
                                            ("estimate", "curvature 'raising-kfac'"),
                                            ("candidates", "structure 'raising-row-col'"),
                                            ("apply", "structure 'raising-row-col'")])
def test_a_plugin_raising_in_a_hook_is_named_and_leaves_no_output(
        hook, item, raising_plugin, tiny_model_dir, wikitext_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LLM_SURGEON_RAISING_HOOK", hook)
    out = tmp_path / "out"
    code = cli.main(_small_run(tiny_model_dir, wikitext_dir, out, "--method", "raising-surgeon",
                               "--curvature", "raising-kfac", "--structure", "raising-row-col"))
    err = capsys.readouterr().err
    assert code == 1
    line, = [x for x in err.splitlines() if x.startswith("llm-surgeon:")]
    assert f"plugin 'raiser' from distribution llm-surgeon-raising 0.2.0 ({item})" in line
    assert f"{hook} failed on purpose" in line and "llm_surgeon_raising" in line
    assert not out.exists()  # nothing that looks complete; shot 1's checkpoint is kept aside
    partial = tmp_path / ".out.partial"
    assert sorted(p.name for p in (partial / "checkpoints").iterdir()) == ["shot-001"]
    assert not (partial / "output").exists()


def test_a_plugin_raising_while_it_registers_is_named(raising_plugin, monkeypatch, capsys):
    monkeypatch.setenv("LLM_SURGEON_RAISING_HOOK", "register_methods")
    assert cli.main(["plugins"]) == 3
    err = capsys.readouterr().err
    assert "plugin 'raiser' from distribution llm-surgeon-raising" in err
    assert "register_methods failed on purpose" in err


def _copy_model(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_a_broken_safetensors_file_is_one_message_naming_it(
        damage, tiny_model_dir, wikitext_dir, tmp_path, capsys):
    model = _copy_model(tiny_model_dir, tmp_path / "model")
    weights = model / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes({"truncated": data[: len(data) // 2], "garbage": b"not a tensor file" * 9,
                         "empty": b""}[damage])
    code = cli.main(_small_run(model, wikitext_dir, tmp_path / "out"))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and str(weights) in err[0] and "truncated or corrupt" in err[0]


def _tiny_gguf(path: Path) -> None:
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(64)
    writer.add_embedding_length(16)
    writer.add_block_count(1)
    writer.add_head_count(4)
    writer.add_tensor("token_embd.weight", np.random.default_rng(0).normal(size=(64, 16)).astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_broken_gguf_file_is_one_message_naming_it(damage, wikitext_dir, tmp_path, capsys):
    path = tmp_path / "model.gguf"
    _tiny_gguf(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 1000] if damage == "truncated" else b"GGUF?" * 50)
    code = cli.main(_small_run(path, wikitext_dir, tmp_path / "out"))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and str(path) in err[0] and "GGUF" in err[0]


def test_a_full_disk_during_the_save_keeps_the_previous_output(
        tiny_model_dir, wikitext_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.json").write_text('{"previous": true}')
    monkeypatch.setenv(faults.FAULT_ENV, "final-save=enospc")
    code = cli.main(_small_run(tiny_model_dir, wikitext_dir, out, "--method", "magnitude", "--overwrite"))
    err = capsys.readouterr().err
    assert code == 1
    assert "No space left on device" in err and str(out) in err and "--resume" in err
    assert [p.name for p in out.iterdir()] == ["report.json"]
    assert json.loads((out / "report.json").read_text()) == {"previous": True}
    partial = tmp_path / ".out.partial"
    assert not (partial / "output").exists()  # the half-written output is gone
    assert sorted(p.name for p in (partial / "checkpoints").iterdir()) == ["shot-001", "shot-002"]

    monkeypatch.delenv(faults.FAULT_ENV)  # space freed: the resumed run only redoes the save
    assert cli.main(["prune", "--resume", str(out), "--no-progress"]) == 0
    assert json.loads((out / "report.json").read_text())["resumed_after"] == [2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_empty_calibration_file_is_refused_before_loading(tiny_model_dir, tmp_path, no_model_loading,
                                                          capsys):
    empty = tmp_path / "calib.txt"
    empty.write_text("")
    code = cli.main(["prune", str(tiny_model_dir), "--data", "text", "--data-dir", str(empty),
                     "--seqlen", "32", "--no-eval"])
    assert code == 2
    assert f"calibration data file {str(empty)!r} is empty" in capsys.readouterr().err


def test_too_short_calibration_text_is_refused_before_the_weights_load(
        tiny_model_dir, tmp_path, monkeypatch, capsys):
    from llm_surgeon.run import runner

    short = tmp_path / "calib.txt"
    short.write_text("the river and the city .\n")
    monkeypatch.setattr(runner, "load_weights", lambda *a, **k: pytest.fail("weights were loaded"))
    code = cli.main(["prune", str(tiny_model_dir), "--data", "text", "--data-dir", str(short),
                     "--seqlen", "32", "--no-eval", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert str(short) in err and "fewer than seqlen + 1 = 33" in err


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_outputs_honour_the_umask(mask, tiny_model_dir, wikitext_dir, tmp_path):
    old = os.umask(mask)
    try:
        out = tmp_path / "out"
        assert cli.main(_small_run(tiny_model_dir, wikitext_dir, out, "--method", "magnitude")) == 0
        write_json(tmp_path / "alone.json", {"a": 1})
    finally:
        os.umask(old)
    for path in [out, *out.rglob("*"), tmp_path / "alone.json"]:
        expected = (0o777 if path.is_dir() else 0o666) & ~mask
        assert stat.S_IMODE(path.stat().st_mode) == expected, path
