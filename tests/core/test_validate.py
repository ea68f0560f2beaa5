"""Invalid runs fail before any weights are loaded, with one message and exit code 2."""

from __future__ import annotations

import json

import pytest

from llm_surgeon import cli
from llm_surgeon.errors import ConfigError
from llm_surgeon.run.config import RunConfig
from llm_surgeon.run.validate import validate_run


@pytest.fixture
def base_args(tiny_model_dir, wikitext_dir):
    return ["prune", str(tiny_model_dir), "--method", "fake", "--data-dir", str(wikitext_dir), "--seqlen", "32"]


BAD = [
    (["--target-size", "1.5"], "target_size must be in (0, 1]"),
    (["--target-size", "0"], "target_size must be in (0, 1]"),
    (["--target-size", "0.5", "--sparsity", "0.5"], "not allowed with argument"),
    (["--sparsity", "1.0"], "--sparsity must be in [0, 1)"),
    (["--shots", "0"], "shots must be >= 1"),
    (["--seqlen", "256"], "longer than the model's context (128 tokens)"),
    (["--method", "fak"], "unknown method 'fak'; did you mean 'fake'?"),
    (["--curvature", "fake-kfca"], "did you mean 'fake-kfac'?"),
    (["--structure", "rowcol"], "did you mean 'row-col'?"),
    (["--structure", "4:2"], "N:M structure needs 0 < N < M"),
    (["--structure", "4:4"], "N:M structure needs 0 < N < M"),
    (["--method", "element-only", "--structure", "row-col"],
     "method 'element-only' does not support structure 'row-col' (supported: element)"),
    (["--method", "element-only", "--structure", "2:4"], "does not support structure '2:4'"),
    (["--curvature-option", "colour=3"], "unknown option(s) ['colour'] for curvature 'fake-kfac'"),
    (["--samples", "3"], "unknown option(s) ['samples'] for curvature 'fake-kfac'"),
    (["--rank", "0"], "bad option for curvature 'fake-kfac'"),
    (["--curvature", "plain", "--rank", "2"], "curvature 'plain' takes no options"),
    (["--method", "no-curvature", "--rank", "2"], "uses no curvature estimator"),
    (["--structure", "element", "--chunk-size", "8"], "structure 'element' takes no options"),
    (["--update", "some"], "invalid choice"),
    (["--schedule", "exponential"], "unknown schedule 'exponential'"),
    (["--data", "wikitxt2"], "did you mean 'wikitext2'?"),
    (["--calib-split", "dev"], "unknown split 'dev'"),
    (["--dtype", "float8"], "unknown dtype 'float8'"),
    (["--device", "cuda:7"], "cuda:7"),
    (["--curvature-option", "novalue"], "--curvature-option expects KEY=VALUE"),
    (["--lora-rank", "0"], "rank must be >= 1"),
]


@pytest.mark.parametrize(("extra", "message"), BAD, ids=[" ".join(e) for e, _ in BAD])
def test_bad_prune_inputs_exit_2_before_loading(extra, message, base_args, fake_registry, no_model_loading, capsys):
    assert cli.main(base_args + extra) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("error") == 1  # one clear message, no traceback
    assert "Traceback" not in err


def test_missing_model_and_data(tmp_path, wikitext_dir, fake_registry, no_model_loading, capsys):
    assert cli.main(["prune", "./no/such/model", "--method", "fake", "--data-dir", str(wikitext_dir)]) == 2
    assert "not found" in capsys.readouterr().err
    assert cli.main(["prune", "--data-dir", str(wikitext_dir)]) == 2
    assert "no model given" in capsys.readouterr().err


def test_missing_data_dir(tiny_model_dir, tmp_path, fake_registry, no_model_loading, capsys):
    assert cli.main(["prune", str(tiny_model_dir), "--method", "fake", "--data-dir", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_non_empty_output_needs_overwrite(base_args, tmp_path, fake_registry, no_model_loading, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.json").write_text("{}")
    assert cli.main(base_args + ["--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_unsupported_architecture(tmp_path, wikitext_dir, fake_registry, no_model_loading, capsys):
    folder = tmp_path / "bloom"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "bloom", "seq_length": 64}))
    assert cli.main(["prune", str(folder), "--method", "fake", "--data-dir", str(wikitext_dir), "--seqlen", "32"]) == 2
    err = capsys.readouterr().err
    assert "no architecture adapter for model_type 'bloom'" in err and "register_architectures" in err
    assert "llm_surgeon.testing.check_adapter" in err and "examples/gpt-neox-adapter" in err


def test_bad_recipe(tmp_path, fake_registry, no_model_loading, capsys):
    assert cli.main(["prune", "--recipe", str(tmp_path / "missing.yaml")]) == 2
    assert "cannot read recipe" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: x\nunknown_key: 3\n")
    assert cli.main(["prune", "--recipe", str(bad)]) == 2
    assert "unknown_key" in capsys.readouterr().err


def test_bad_eval_inputs(tiny_model_dir, wikitext_dir, no_model_loading, capsys):
    base = ["eval", str(tiny_model_dir), "--data-dir", str(wikitext_dir)]
    assert cli.main(base + ["--seqlen", "256"]) == 2
    assert "longer than the model's context (128 tokens)" in capsys.readouterr().err
    assert cli.main(base + ["--eval-windows", "0"]) == 2
    assert "windows must be >= 1" in capsys.readouterr().err
    assert cli.main(base + ["--data", "wiki"]) == 2
    assert "unknown dataset" in capsys.readouterr().err


def test_validate_run_resolves_plugins(tiny_model_dir, wikitext_dir, fake_registry, no_model_loading):
    config = RunConfig.from_dict({
        "model": str(tiny_model_dir), "method": "fake", "structure": "2:4",
        "curvature_options": {"rank": 3},
        "calibration": {"seqlen": 32, "data": {"data_dir": str(wikitext_dir), "split": "train"}},
        "evaluation": {"seqlen": 32, "data": {"data_dir": str(wikitext_dir), "split": "test"}},
    })
    resolved = validate_run(config)
    assert resolved.method.name == "fake"
    assert resolved.curvature.name == "fake-kfac" and resolved.curvature_config.rank == 3
    assert resolved.structure.name == "n:m"
    assert (resolved.structure_config.n, resolved.structure_config.m) == (2, 4)
    assert resolved.model_config.model_type == "llama"
    assert resolved.create_curvature().rank == 3  # the fake factory returns its config

    no_curv = validate_run(RunConfig(model=str(tiny_model_dir), method="no-curvature", structure="element"),
                           check_model=False)
    assert no_curv.curvature is None and no_curv.create_curvature() is None


def test_nm_options_conflict(fake_registry):
    config = RunConfig(model="m", method="fake", structure="2:4", structure_options={"n": 1})
    with pytest.raises(ConfigError, match="conflicts"):
        validate_run(config, check_model=False)
