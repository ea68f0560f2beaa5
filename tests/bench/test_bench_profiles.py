"""Benchmark profiles are valid run configurations with the documented settings."""

from __future__ import annotations

import pytest

from bench import profiles
from llm_surgeon.run.config import RunConfig


@pytest.mark.parametrize("name", profiles.names())
def test_profile_runs_are_run_configs(name):
    runs = profiles.expand(profiles.get(name))
    assert runs, name
    ids = [r.id for r in runs]
    assert len(ids) == len(set(ids)), "run ids must be unique within a profile"
    for run in runs:
        config = RunConfig.from_dict(run.config)
        assert config.out is None
        assert config.calibration.data.split == "validation"
        assert config.evaluation.data.split == "test"
        # The dictionary round-trips (RunConfig.to_dict is what records store).
        assert RunConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize("name", profiles.names())
def test_profile_runs_pass_validation(name):
    """Plugin names, options, structures and sequence lengths are accepted before loading."""
    import importlib.util

    from llm_surgeon.model.aliases import ALIASES

    validate = pytest.importorskip("llm_surgeon.run.validate")
    seen = set()
    model = profiles.get(name).base["model"]
    alias = ALIASES.get(model)
    # A profile whose model package is not installed (gemma3: 240 MB) is checked without its config.
    check_model = alias is None or importlib.util.find_spec(alias.package) is not None
    for run in profiles.expand(profiles.get(name)):
        c = run.config
        combo = (c["method"], c["structure"], c["calibration"]["seqlen"], c["evaluation"]["seqlen"],
                 bool(c.get("lora")))
        if combo in seen:
            continue
        seen.add(combo)
        validate.validate_run(RunConfig.from_dict(run.config), check_model=check_model)


def test_profile_settings_match_the_issue():
    quick = [RunConfig.from_dict(r.config) for r in profiles.expand(profiles.get("quick"))]
    assert {(c.calibration.nsamples, c.calibration.seqlen) for c in quick} == {(16, 256)}
    assert {(c.evaluation.windows, c.evaluation.seqlen) for c in quick} == {(16, 512)}
    assert {c.model for c in quick} == {"smollm2-135m"}

    cpu = [RunConfig.from_dict(r.config) for r in profiles.expand(profiles.get("cpu"))]
    assert {(c.calibration.nsamples, c.calibration.seqlen) for c in cpu} == {(32, 512)}
    assert {(c.evaluation.windows, c.evaluation.seqlen) for c in cpu} == {(64, 512)}
    structured = {(c.method, c.target_size) for c in cpu if c.structure == "row-col" and not c.lora.enabled}
    assert structured == {(m, t) for m in ("surgeon", "kobd", "lobd", "magnitude") for t in (0.9, 0.8, 0.7)}
    for structure in ("element", "2:4"):
        methods = {c.method for c in cpu if c.structure == structure and not c.lora.enabled}
        assert {"surgeon", "sparsegpt", "wanda", "magnitude"} <= methods
    assert all(c.shots == 5 for c in cpu if c.method in ("surgeon", "kobd", "lobd"))
    lora = {(c.structure, c.target_size) for c in cpu if c.lora.enabled}
    assert lora == {("row-col", 0.8), ("row-col", 0.7), ("element", 0.5), ("row-col", 1.0)}
    control = [c for c in cpu if c.lora.enabled and c.target_size == 1.0]
    assert len(control) == 1 and control[0].shots == 5  # LoRA on the dense model

    paper = [RunConfig.from_dict(r.config) for r in profiles.expand(profiles.get("paper"))]
    assert {(c.calibration.nsamples, c.calibration.seqlen) for c in paper} == {(128, 2048)}
    assert {c.evaluation.windows for c in paper} == {None}
    assert {c.shots for c in paper if c.method == "surgeon" and c.structure == "row-col"} == {40}

    ci = [RunConfig.from_dict(r.config) for r in profiles.expand(profiles.get("ci"))]
    assert max(c.calibration.nsamples * c.calibration.seqlen for c in ci) <= 4 * 128
    assert len(ci) <= 3


def test_expand_overrides_model_data_dir_and_device():
    runs = profiles.expand(profiles.get("paper"), model="/models/llama", data_dir="/data/wt2",
                           device="cuda")
    for run in runs:
        c = RunConfig.from_dict(run.config)
        assert c.model == "/models/llama"
        assert c.device == "cuda"
        assert c.calibration.data.data_dir == "/data/wt2"
        assert c.evaluation.data.data_dir == "/data/wt2"
    # The profile itself is untouched.
    assert profiles.expand(profiles.get("paper"))[0].config["model"] == profiles.DEFAULT_MODEL


def test_merge_is_deep_and_copies():
    base = {"a": 1, "n": {"x": 1, "y": {"z": 2}}}
    out = profiles.merge(base, {"n": {"y": {"w": 3}}, "b": 2})
    assert out == {"a": 1, "b": 2, "n": {"x": 1, "y": {"z": 2, "w": 3}}}
    out["n"]["x"] = 5
    assert base["n"]["x"] == 1


def test_unknown_profile_lists_valid_names():
    with pytest.raises(KeyError, match="quick"):
        profiles.get("quik")


def test_ablations_change_one_setting_of_the_cpu_protocol():
    runs = {r.id: RunConfig.from_dict(r.config) for r in profiles.expand(profiles.get("ablations"))}
    base = runs["surgeon-rowcol-0.8-kfac"]
    assert (base.method, base.structure, base.target_size, base.shots) == ("surgeon", "row-col", 0.8, 5)
    assert (base.calibration.nsamples, base.calibration.seqlen, base.evaluation.windows) == (32, 512, 64)
    assert base.curvature is None and base.damping_g is None and not base.curvature_options

    def changed(config: RunConfig) -> set[str]:
        reference = runs[f"surgeon-{config.structure.replace('-', '')}-{config.target_size:g}-kfac"]
        a, b = config.to_dict(), reference.to_dict()
        return {k for k in a if a[k] != b[k]}

    expected = {
        "nkfac-r1": {"curvature", "curvature_options"}, "nkfac-r2": {"curvature", "curvature_options"},
        "shots1": {"shots"}, "shots10": {"shots"}, "calib8": {"calibration"},
        "calib128": {"calibration"}, "damp0.03": {"damping_g", "damping_a"},
        "damp0.3": {"damping_g", "damping_a"}, "sampled": {"curvature_options"},
        "chunkrow": {"structure_options"}, "chunk1024": {"structure_options"},
    }
    for run_id, config in runs.items():
        if config.structure == "dims" or run_id.endswith("-kfac"):
            continue
        assert changed(config) == expected[run_id.rsplit("-0.", 1)[1].split("-", 1)[1]], run_id
    assert runs["surgeon-rowcol-0.8-nkfac-r2"].curvature_options == {"rank": 2}
    assert runs["surgeon-element-0.5-nkfac-r1"].curvature == "nearest-kfac"
    assert {runs[f"surgeon-rowcol-0.8-{t}"].calibration.nsamples for t in ("calib8", "calib128")} == {8, 128}
    assert runs["surgeon-rowcol-0.8-sampled"].curvature_options == {"fisher_type": "sampled"}
    assert runs["surgeon-element-0.5-chunkrow"].structure_options == {"chunk_size": "row"}
