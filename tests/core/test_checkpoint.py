"""Checkpoint pieces: the tensor tree, generator states, the locked work folder, and a
session restored from a checkpoint equal to the one that wrote it."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from llm_surgeon.curvature.types import Curvature, DiagonalCurvature, KroneckerCurvature
from llm_surgeon.errors import ConfigError
from llm_surgeon.methods.loop import run_shots
from llm_surgeon.run import checkpoint as checkpoint_module
from llm_surgeon.run.checkpoint import Checkpoint, CheckpointHook, latest_checkpoint
from llm_surgeon.run.config import LoraSettings, RunConfig
from llm_surgeon.run.output import RunOutput, config_differences
from llm_surgeon.testing import make_session, tiny_model
from llm_surgeon.util.partial import PartialFolder
from llm_surgeon.util.rng import rng_state, set_rng_state
from llm_surgeon.util.tensor_tree import flatten, unflatten


def test_tensor_tree_round_trip_keeps_types_and_bits():
    g = torch.randn(3, 3, dtype=torch.float64)
    value = {"m": KroneckerCurvature(((g, None), (None, torch.randn(4, 4))), 3, 4, info={"sigma": [1.5]}),
             "d": DiagonalCurvature(torch.rand(2, 5)), "plain": [1, 2.5, "x", None, (True, torch.arange(3))]}
    tensors: dict = {}
    skeleton = json.loads(json.dumps(flatten(value, tensors)))  # the skeleton is plain JSON
    back = unflatten(skeleton, tensors, (Curvature,))
    assert isinstance(back["m"], KroneckerCurvature) and back["m"].factors[0][1] is None
    assert torch.equal(back["m"].factors[0][0], g) and back["m"].info == {"sigma": [1.5]}
    assert torch.equal(back["d"].values, value["d"].values)
    assert back["plain"][:4] == [1, 2.5, "x", None] and isinstance(back["plain"][4], tuple)
    assert torch.equal(back["plain"][4][1], torch.arange(3))


def test_tensor_tree_refuses_what_it_cannot_rebuild():
    with pytest.raises(TypeError, match="extras/obj"):
        flatten({"obj": object()}, {}, "extras")
    skeleton = flatten(DiagonalCurvature(torch.ones(1, 1)), tensors := {})
    with pytest.raises(ValueError, match="not an allowed"):
        unflatten(skeleton, tensors)  # no class allowed
    skeleton["attrs"] = "os:system"
    with pytest.raises(ValueError, match="not an allowed"):
        unflatten(skeleton, tensors, (Curvature,))


def test_generator_states_are_put_back():
    tensors, data = rng_state()
    first = (torch.rand(3), random.random(), np.random.rand())
    set_rng_state(tensors, json.loads(json.dumps(data)))
    again = (torch.rand(3), random.random(), np.random.rand())
    assert torch.equal(first[0], again[0]) and first[1:] == again[1:]


def test_the_work_folder_is_locked_while_a_run_writes_it(tmp_path):
    first = PartialFolder(tmp_path / "out")
    first.create()
    assert first.path == tmp_path / ".out.partial"
    with pytest.raises(ConfigError, match="another llm-surgeon run is writing"):
        PartialFolder(tmp_path / "out").lock()
    config = RunConfig(model="m", out=str(tmp_path / "out"))
    with pytest.raises(ConfigError, match="another llm-surgeon run is writing"):
        RunOutput.start(config, overwrite=True)
    first.release()
    output = RunOutput.start(config, overwrite=True)  # a stale work folder is discarded
    assert sorted(p.name for p in output.partial.path.iterdir()) == ["lock", "run.json", "run_config.json"]


def test_config_differences_name_nested_keys():
    a = RunConfig(model="m", out="x").to_dict()
    b = RunConfig(model="m", shots=3, out="y", lora=LoraSettings(enabled=True)).to_dict()
    assert config_differences(a, b) == ["lora.enabled: False -> True", "shots: 5 -> 3"]
    assert config_differences(a, a) == []


OPTIONS = {"curvature": "nearest-kfac", "curvature_options": {"iterations": 1}, "target_size": 0.6,
           "shots": 2}


@pytest.mark.parametrize("keep", ["all", "last"])
def test_every_shot_is_checkpointed_and_keep_last_keeps_one(keep, tmp_path):
    method, session = make_session(tiny_model("llama"), **OPTIONS)
    logs = run_shots(method, session, hooks=[CheckpointHook(tmp_path, {"model": "m"}, keep=keep)])
    assert sorted(p.name for p in tmp_path.iterdir()) == (["shot-001", "shot-002"] if keep == "all"
                                                          else ["shot-002"])
    last = latest_checkpoint(tmp_path)
    assert last.shot == 2 and last.state["config"] == {"model": "m"}
    assert [entry["shot"] for entry in last.state["shot_logs"]] == [1, 2]
    info = logs[1].info["checkpoint"]
    assert info["mb"] > 0 and info["seconds"] > 0 and len(info["mask_sha256"]) == 64


def test_a_restored_session_continues_exactly_like_the_original(tmp_path, monkeypatch):
    """Restore shot 1's checkpoint into an untouched model and run shot 2: bit for bit the same."""
    monkeypatch.setattr(checkpoint_module, "SHARD_BYTES", 4096)  # weights in several files
    method, original = make_session(tiny_model("llama"), **OPTIONS)
    run_shots(method, original, hooks=[CheckpointHook(tmp_path, {})])
    folder = tmp_path / "shot-001"
    assert len(list(folder.glob("weights-*.safetensors"))) > 3
    checkpoint = Checkpoint(folder, json.loads((folder / "state.json").read_text()))

    method, restored = make_session(tiny_model("llama"), **OPTIONS)
    assert [log.shot for log in checkpoint.restore(restored)] == [1]
    assert set(restored.previous_curvatures) == {s.pm.name for s in restored.states}
    run_shots(method, restored, first_shot=2)
    for a, b in zip(original.states, restored.states, strict=True):
        assert torch.equal(a.mask, b.mask)
        assert torch.equal(a.pm.module.weight, b.pm.module.weight)


def test_resume_without_an_interrupted_run_says_so(tmp_path, capsys):
    from llm_surgeon import cli

    assert cli.main(["prune", "--resume", str(tmp_path / "never")]) == 2
    assert "no interrupted run of" in capsys.readouterr().err
    done = tmp_path / "done"
    done.mkdir()
    (done / "report.json").write_text("{}")
    assert cli.main(["prune", "--resume", str(done)]) == 2
    assert "is complete: nothing to resume" in capsys.readouterr().err


def test_a_run_killed_after_its_output_was_complete_resumes_into_the_rename(
        tiny_model_dir, wikitext_dir, tmp_path, monkeypatch):
    from llm_surgeon.run import runner
    from llm_surgeon.run.config import CalibrationConfig, DataConfig, EvalConfig
    from llm_surgeon.util.partial import SAVED_MARKER

    data = DataConfig(data_dir=str(wikitext_dir), split="validation")
    config = RunConfig(model=str(tiny_model_dir), out=str(tmp_path / "out"),
                       calibration=CalibrationConfig(data=data, seqlen=32),
                       evaluation=EvalConfig(data=data, seqlen=32))
    output = RunOutput.start(config)
    (output.start_output() / "report.json").write_text('{"done": true}')
    (output.partial.path / SAVED_MARKER).touch()
    output.partial.release()
    monkeypatch.setattr(runner, "_run", lambda *a: pytest.fail("the run was redone"))
    assert runner.prune(config, resume=True) == {"done": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert json.loads((tmp_path / "out" / "report.json").read_text()) == {"done": True}
