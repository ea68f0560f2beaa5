"""The command line: help, plugins listing, prune flags, recipes and overrides."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from llm_surgeon import cli
from llm_surgeon.cli import COMMANDS, build_parser
from llm_surgeon.cli.prune import build_config
from llm_surgeon.run.recipes import config_from_recipe, load_recipe, merge


def _subcommands() -> list[str]:
    import argparse

    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return list(action.choices)


def test_core_commands_are_registered():
    assert {"eval", "prune", "plugins"} <= set(COMMANDS)
    assert {"eval", "prune", "plugins"} <= set(_subcommands())


@pytest.mark.parametrize("command", _subcommands())
def test_every_command_has_help(command, capsys):
    assert cli.main([command, "--help"]) == 0
    assert "usage: llm-surgeon " + command in capsys.readouterr().out


def test_console_script_runs():
    result = subprocess.run([sys.executable, "-m", "llm_surgeon.cli", "--help"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "prune" in result.stdout


def test_plugins_json_lists_kind_name_description_distribution_version(fake_registry, capsys):
    assert cli.main(["plugins", "--json"]) == 0
    items = json.loads(capsys.readouterr().out)
    fake = next(i for i in items if i["name"] == "fake-kfac")
    assert fake == {"kind": "curvature", "name": "fake-kfac", "description": "fake KFAC",
                    "plugin": "fake", "distribution": "fake-dist", "version": "9.9"}
    assert {"llama", "opt"} <= {i["name"] for i in items if i["kind"] == "architecture"}


def test_plugins_table(fake_registry, capsys):
    assert cli.main(["plugins", "--kind", "structure"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["KIND", "NAME", "DISTRIBUTION", "DESCRIPTION"]
    assert len(lines) == 4 and all(line.startswith("structure") for line in lines[1:])
    assert "fake-dist 9.9" in lines[1]


def _args(*argv):
    return build_parser().parse_args(["prune", *argv])


def test_flags_build_the_run_config():
    config = build_config(_args(
        "m", "--method", "surgeon", "--curvature", "kfac", "--structure", "2:4", "--sparsity", "0.25",
        "--shots", "3", "--rank", "2", "--fisher-type", "sampled", "--chunk-size", "64",
        "--curvature-option", "power_steps=4", "--data-dir", "D", "--calib-split", "validation",
        "--nsamples", "8", "--seqlen", "128", "--batch-size", "2", "--seed", "7", "--eval-windows", "4",
        "--eval-every-shot", "--damping-g", "0.1", "--update", "none", "--out", "O", "--no-save-model",
        "--lora", "--lora-rank", "4", "--lora-roles", "q,v", "--lora-steps", "3",
    ))
    assert config.model == "m" and config.curvature == "kfac" and config.structure == "2:4"
    assert config.target_size == pytest.approx(0.75)
    assert config.curvature_options == {"rank": 2, "fisher_type": "sampled", "power_steps": 4}
    assert config.structure_options == {"chunk_size": 64}
    assert config.calibration.data.data_dir == "D" and config.calibration.data.split == "validation"
    assert config.evaluation.data.data_dir == "D" and config.evaluation.data.split == "test"
    assert (config.calibration.nsamples, config.calibration.seqlen, config.calibration.seed) == (8, 128, 7)
    assert config.calibration.batch_size == 2 and config.seed == 7
    assert (config.evaluation.seqlen, config.evaluation.windows, config.evaluation.every_shot) == (128, 4, True)
    assert config.damping_g == 0.1 and config.update == "none" and config.out == "O"
    assert config.save_model is False
    assert config.lora.enabled and config.lora.rank == 4 and config.lora.roles == ("q", "v")
    assert config.lora.steps_per_shot == 3


def test_defaults_without_flags():
    config = build_config(_args("m"))
    assert config.curvature_options == {} and config.structure_options == {}
    assert config.calibration.data.split == "train" and config.evaluation.enabled
    assert config.lora.enabled is False
    assert build_config(_args("m", "--no-eval")).evaluation.enabled is False


@pytest.mark.parametrize("suffix", [".yaml", ".toml"])
def test_recipe_values_and_flag_overrides(tmp_path, suffix):
    recipe = tmp_path / f"run{suffix}"
    if suffix == ".yaml":
        recipe.write_text(
            "model: from-recipe\nmethod: magnitude\nstructure: element\nsparsity: 0.4\nshots: 3\n"
            "curvature_options: {rank: 2}\n"
            "calibration:\n  nsamples: 8\n  data: {data_dir: RECIPE_DIR}\n"
            "evaluation: {windows: 16}\n"
        )
    else:
        recipe.write_text(
            'model = "from-recipe"\nmethod = "magnitude"\nstructure = "element"\nsparsity = 0.4\nshots = 3\n'
            "[curvature_options]\nrank = 2\n"
            '[calibration]\nnsamples = 8\n[calibration.data]\ndata_dir = "RECIPE_DIR"\n'
            "[evaluation]\nwindows = 16\n"
        )
    from_file = config_from_recipe(recipe)
    assert from_file.target_size == pytest.approx(0.6) and from_file.shots == 3
    assert from_file.calibration.data.split == "train"  # partial sections keep their defaults
    assert from_file.calibration.data.data_dir == "RECIPE_DIR"

    config = build_config(_args("--recipe", str(recipe), "--shots", "2", "--target-size", "0.5",
                                "--iterations", "3", "--eval-windows", "4"))
    assert config.model == "from-recipe" and config.method == "magnitude"
    assert config.shots == 2 and config.target_size == 0.5
    assert config.curvature_options == {"rank": 2, "iterations": 3}
    assert config.calibration.nsamples == 8 and config.evaluation.windows == 4
    assert build_config(_args("other", "--recipe", str(recipe))).model == "other"


def test_recipe_round_trips_the_resolved_config(tmp_path):
    import yaml

    config = build_config(_args("m", "--structure", "2:4", "--lora", "--lora-roles", "q"))
    path = tmp_path / "resolved.yaml"
    path.write_text(yaml.safe_dump(json.loads(json.dumps(config.to_dict()))))
    assert config_from_recipe(path) == config


def test_recipe_helpers(tmp_path):
    assert merge({"a": {"b": 1, "c": 2}, "d": 1}, {"a": {"b": 3}}) == {"a": {"b": 3, "c": 2}, "d": 1}
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_recipe(empty) == {}


def test_prune_calls_the_runner_and_prints_perplexities(tiny_model_dir, wikitext_dir, tmp_path,
                                                        fake_registry, fake_runner, capsys):
    out = tmp_path / "out"
    code = cli.main(["prune", str(tiny_model_dir), "--method", "fake", "--structure", "2:4",
                     "--data-dir", str(wikitext_dir), "--seqlen", "32", "--out", str(out), "--no-progress"])
    assert code == 0
    (config, progress), = fake_runner
    assert config.structure == "2:4" and config.out == str(out) and progress is False
    stdout = capsys.readouterr().out
    assert "ppl before     20.0000" in stdout and "ppl after      25.5000" in stdout

    assert cli.main(["prune", str(tiny_model_dir), "--method", "fake", "--data-dir", str(wikitext_dir),
                     "--seqlen", "32", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ppl_after"] == 25.5


@pytest.mark.parametrize(("structure", "target", "tolerance"), [("element", 0.5, 0.001), ("row-col", 0.8, 0.02)])
def test_prune_end_to_end_on_a_tiny_model(structure, target, tolerance, tiny_model_dir, wikitext_dir,
                                          tmp_path, fresh_registry, monkeypatch, capsys):
    """The issue's acceptance run, on a tiny model: loadable output, achieved size, finite ppl."""
    import math

    import torch
    from transformers import AutoModelForCausalLM

    monkeypatch.setenv("LLM_SURGEON_CACHE", "off")
    out = tmp_path / "out"
    code = cli.main(["prune", str(tiny_model_dir), "--method", "magnitude", "--structure", structure,
                     "--target-size", str(target), "--shots", "1", "--data-dir", str(wikitext_dir),
                     "--seqlen", "32", "--nsamples", "4", "--eval-windows", "4", "--out", str(out),
                     "--no-progress"])
    assert code == 0, capsys.readouterr().err
    stdout = capsys.readouterr().out
    assert "ppl before" in stdout and "ppl after" in stdout
    report = json.loads((out / "report.json").read_text())
    assert report["achieved_size"] == pytest.approx(target, abs=tolerance)
    assert math.isfinite(report["ppl_before"]) and math.isfinite(report["ppl_after"])
    assert "train split not available" in report["calibration"]["note"]
    # The structure's default damping was resolved and recorded (magnitude ignores it).
    expected_a = 0.01 if structure == "element" else 0.1
    assert report["damping"] == {"g": 0.1, "a": expected_a}
    model = AutoModelForCausalLM.from_pretrained(out)
    linears = [m.weight for name, m in model.named_modules()
               if isinstance(m, torch.nn.Linear) and ".layers." in name]
    kept = sum(int(w.count_nonzero()) for w in linears) / sum(w.numel() for w in linears)
    assert kept == pytest.approx(report["achieved_size"], abs=1e-9)
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary folders left


def test_lora_without_pruning_is_a_control_run(tiny_model_dir, wikitext_dir, tmp_path, fresh_registry,
                                               monkeypatch, capsys):
    """``--target-size 1.0 --lora``: nothing is removed, only the LoRA phases run.

    This is the control for LoRA results: how much of a gain comes from fine-tuning on
    the calibration domain rather than from repairing the pruning damage.
    """
    monkeypatch.setenv("LLM_SURGEON_CACHE", "off")
    out = tmp_path / "out"
    code = cli.main(["prune", str(tiny_model_dir), "--method", "magnitude", "--structure", "row-col",
                     "--target-size", "1.0", "--shots", "2", "--lora", "--lora-steps", "3",
                     "--lora-lr", "0.01", "--data-dir", str(wikitext_dir), "--seqlen", "32",
                     "--nsamples", "4", "--eval-windows", "4", "--out", str(out), "--no-progress",
                     "--no-save-model"])
    assert code == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    assert report["achieved_size"] == 1.0
    assert [s["info"]["lora"]["steps"] for s in report["shot_log"]] == [3, 3]
    assert report["ppl_after"] != report["ppl_before"]  # the adapters were merged
