"""``llm-surgeon plan``: memory and passes from a model's configuration, no weights loaded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llm_surgeon import cli
from llm_surgeon.run import plan as P

SCALE = Path(__file__).resolve().parents[2] / "bench" / "configs" / "llama2-7b-2layers"


@pytest.fixture
def tiny_config(tmp_path) -> Path:
    folder = tmp_path / "tiny"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 32,
        "intermediate_size": 48, "num_hidden_layers": 3, "num_attention_heads": 4,
        "num_key_value_heads": 2, "vocab_size": 100, "max_position_embeddings": 64}))
    return folder


def test_shapes_come_from_a_meta_model(tiny_config):
    model = P.model_shape(P.load_config(str(tiny_config)))
    assert model.layers == 3 and model.hidden == 32 and model.intermediate == 48 and model.vocab == 100
    assert len(model.modules) == 21
    gate = next(m for m in model.modules if m.role == "gate")
    assert (gate.d_out, gate.d_in) == (48, 32)
    # config.json itself reads the same; --layers overrides the depth.
    assert P.model_shape(P.load_config(str(tiny_config / "config.json"))).parameters == model.parameters
    assert P.model_shape(P.load_config(str(tiny_config)), layers=1).layers == 1


def test_kfac_factors_count_each_shared_input_factor_once(tiny_config):
    model = P.model_shape(P.load_config(str(tiny_config)))
    cal = P.Calibration(nsamples=8, seqlen=16, statistic_bytes=8)
    kfac = P.estimate(model, P.resolve_strategy("surgeon", None, "row-col"), cal)
    # Per layer one input factor each for q/k/v (shared), o, gate/up (shared) and down.
    inputs = model.layers * (3 * 32**2 + 48**2)
    want = (sum(m.d_out**2 for m in model.modules) + inputs) * 8 / 2**20
    assert kfac.factors_mb == pytest.approx(want)
    lobd = P.estimate(model, P.resolve_strategy("lobd", None, "row-col"), cal)
    assert lobd.factors_mb == pytest.approx(inputs * 8 / 2**20)
    nearest = P.estimate(model, P.resolve_strategy("surgeon", "nearest-kfac", "row-col", {"rank": 2}), cal)
    assert nearest.factors_mb == pytest.approx(2 * sum(m.d_out**2 + m.d_in**2 for m in model.modules) * 8 / 2**20)
    assert (nearest.passes_per_shot, nearest.passes) == ("5, then 4", 5 + 4 * 4)
    assert P.estimate(model, P.resolve_strategy("magnitude", None, "row-col"), cal).passes == 0


@pytest.mark.parametrize("curvature", ["kfac", "activations"])
def test_planned_factors_are_the_estimators_memory(tmp_path, curvature):
    import torch

    from llm_surgeon.model import adapter_for
    from llm_surgeon.plugins.curvature.activations import ActivationsCurvature
    from llm_surgeon.plugins.curvature.kfac import KFACCurvature
    from llm_surgeon.testing import tiny_model

    model = tiny_model("llama")
    model.config.save_pretrained(tmp_path)
    modules = adapter_for(model).prunable_modules(model)
    batches = [torch.randint(0, model.config.vocab_size, (2, 6), generator=torch.Generator().manual_seed(0))]
    estimator = {"kfac": KFACCurvature, "activations": ActivationsCurvature}[curvature]()
    result = estimator.estimate(model, modules, batches, progress=False)
    shape = P.model_shape(P.load_config(str(tmp_path)))
    planned = P.estimate(shape, P.resolve_strategy("surgeon", curvature, "row-col"), P.Calibration())
    assert planned.factors_mb * 2**20 == result.nbytes


def test_more_ranks_split_the_solve_and_the_windows_not_the_statistics():
    model = P.model_shape(P.load_config(str(SCALE)), layers=8)
    strategy = P.resolve_strategy("surgeon", None, "element")
    one, four = (P.estimate(model, strategy, P.Calibration(nsamples=32, nproc=n)) for n in (1, 4))
    assert four.factors_mb == one.factors_mb  # every rank holds the all-reduced sums
    assert four.inverses_mb < one.inverses_mb  # each solves a quarter of the modules
    assert four.peak_mb < one.peak_mb
    assert one.phase == "solver"


def test_element_candidates_and_inverses_exceed_row_col():
    model = P.model_shape(P.load_config(str(SCALE)))
    cal = P.Calibration(nsamples=4)
    rowcol, element, nm = (P.estimate(model, P.resolve_strategy("surgeon", None, s), cal)
                           for s in ("row-col", "element", "2:4"))
    # At Llama-2-7B widths an element or N:M update's inverses and weight copies outweigh
    # the candidate costs (freed before the updates); row-col needs neither inverse.
    assert rowcol.inverses_mb < nm.inverses_mb == element.inverses_mb
    # With many small modules the candidate costs (one per weight, n/m for N:M) dominate.
    small = P.model_shape(P.load_config(str(SCALE.parent / "smollm2-135m")))
    rowcol, element, nm = (P.estimate(small, P.resolve_strategy("surgeon", None, s), cal)
                           for s in ("row-col", "element", "2:4"))
    assert rowcol.inverses_mb < nm.inverses_mb < element.inverses_mb


def test_cli_prints_a_table_without_loading_weights(tiny_config, no_model_loading, capsys):
    assert cli.main(["plan", str(tiny_config), "--nsamples", "8", "--seqlen", "16"]) == 0
    out = capsys.readouterr().out
    for label in ("surgeon kfac row-col", "sparsegpt element", "wanda element", "peak/rank"):
        assert label in out


def test_cli_json_for_one_strategy(tiny_config, no_model_loading, capsys):
    assert cli.main(["plan", str(tiny_config), "--method", "surgeon", "--structure", "2:4", "--nproc", "2",
                     "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["calibration"]["nproc"] == 2 and len(payload["estimates"]) == 1
    est = payload["estimates"][0]
    assert est["strategy"] == "surgeon kfac 2:4" and est["peak_mb"] > est["weights_mb"] > 0


@pytest.mark.parametrize("argv", [["--nproc", "0"], ["--method", "no-such-method"],
                                  ["--curvature-dtype", "float16"]])
def test_bad_input_is_a_usage_error(tiny_config, argv, capsys):
    assert cli.main(["plan", str(tiny_config), *argv]) == 2


def test_a_missing_model_is_a_usage_error(tmp_path):
    assert cli.main(["plan", str(tmp_path / "nothing")]) == 2


def test_dims_plans_like_row_col_and_the_passes_hold_packed_sums():
    model = P.model_shape(P.load_config(str(SCALE.parent / "smollm2-135m")))
    cal = P.Calibration()
    rowcol, dims = (P.estimate(model, P.resolve_strategy("surgeon", None, s), cal) for s in ("row-col", "dims"))
    assert dims.inverses_mb == rowcol.inverses_mb and dims.peak_mb == rowcol.peak_mb
    assert rowcol.phase == "passes"
    # The pass phase holds the packed running sums, less than the unpacked factors.
    runtime_and_weights = P.RUNTIME_MB + rowcol.weights_mb
    assert rowcol.peak_mb - runtime_and_weights < rowcol.factors_mb + rowcol.activations_mb * (1 + P.FRAGMENTATION)
