"""Property-based tests: recipe and flag parsing refuse bad input naming the key; the global
threshold always lands within one candidate of its target."""

from __future__ import annotations

import string

import attrs
import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llm_surgeon import cli
from llm_surgeon.data.config import CalibrationConfig, DataConfig, EvalConfig
from llm_surgeon.methods.lora.settings import LoraSettings
from llm_surgeon.pruning import CandidateSet, global_threshold
from llm_surgeon.run.config import RunConfig

CLI_SETTINGS = settings(max_examples=25, deadline=None,
                        suppress_health_check=[HealthCheck.function_scoped_fixture])
SECTIONS = {(): RunConfig, ("calibration",): CalibrationConfig, ("evaluation",): EvalConfig,
            ("lora",): LoraSettings, ("calibration", "data"): DataConfig, ("evaluation", "data"): DataConfig}

# Values of another type than the field's, as a recipe can hold them.
_TEXT = st.text(string.ascii_letters + string.digits + ".-", min_size=1, max_size=8)
_LISTS = st.lists(st.integers(), max_size=2)
NOT_INT = st.one_of(_TEXT, st.booleans(), _LISTS, st.floats(allow_nan=False, allow_infinity=False))
NOT_NUMBER = st.one_of(_TEXT, st.booleans(), _LISTS)
NOT_BOOL = st.one_of(_TEXT, st.integers(), _LISTS)
NOT_STR = st.one_of(st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.booleans(), _LISTS)
TYPED = [((), "shots", NOT_INT), ((), "target_size", NOT_NUMBER), ((), "damping_g", NOT_NUMBER),
         ((), "save_model", NOT_BOOL), ((), "method", NOT_STR), ((), "seed", NOT_INT),
         (("calibration",), "nsamples", NOT_INT), (("calibration",), "batch_size", NOT_INT),
         (("evaluation",), "windows", NOT_INT), (("evaluation",), "every_shot", NOT_BOOL),
         (("lora",), "rank", NOT_INT), (("lora",), "lr", NOT_NUMBER), (("lora",), "roles", st.one_of(_TEXT, st.integers())),
         (("calibration", "data"), "data_dir", NOT_STR)]

_NEG_INT = st.integers(max_value=0)
_NEG_FLOAT = st.floats(max_value=-1e-9, allow_nan=False, allow_infinity=False)
_NOT_FRACTION = st.one_of(st.floats(max_value=0.0, allow_nan=False, allow_infinity=False),
                          st.floats(min_value=1.0, exclude_min=True, allow_nan=False, allow_infinity=False))
_NOT_UNIT = st.one_of(_NEG_FLOAT, st.floats(min_value=1.0, allow_nan=False, allow_infinity=False))
RANGED = [((), "target_size", _NOT_FRACTION), ((), "shots", _NEG_INT), ((), "damping_a", _NEG_FLOAT),
          (("calibration",), "nsamples", _NEG_INT), (("calibration",), "seqlen", _NEG_INT),
          (("evaluation",), "windows", _NEG_INT), (("evaluation",), "batch_size", _NEG_INT),
          (("lora",), "rank", _NEG_INT), (("lora",), "lr", st.floats(max_value=0.0, allow_nan=False)),
          (("lora",), "steps_per_shot", st.integers(max_value=-1)), (("lora",), "fraction", _NOT_FRACTION),
          (("lora",), "holdout", _NOT_UNIT), (("lora",), "dropout", _NOT_UNIT)]


def _nested(path: tuple[str, ...], key: str, value) -> dict:
    data = {key: value}
    for part in reversed(path):
        data = {part: data}
    return {"model": "m", **data} if path or key != "model" else data


def _run_recipe(tmp_path_factory, data: dict, capsys) -> tuple[int, str]:
    recipe = tmp_path_factory.mktemp("recipe") / "run.yaml"
    recipe.write_text(yaml.safe_dump(data))
    code = cli.main(["prune", "--recipe", str(recipe)])
    return code, capsys.readouterr().err


@CLI_SETTINGS
@given(section=st.sampled_from(list(SECTIONS)),
       key=st.text(string.ascii_lowercase + "_", min_size=1, max_size=12))
def test_an_unknown_recipe_key_is_named(section, key, tmp_path_factory, no_model_loading, capsys):
    if key in {f.name for f in attrs.fields(SECTIONS[section])} or (not section and key == "sparsity"):
        return
    code, err = _run_recipe(tmp_path_factory, _nested(section, key, 1), capsys)
    assert code == 2 and key in err


@CLI_SETTINGS
@given(case=st.sampled_from(TYPED), data=st.data())
def test_a_recipe_value_of_the_wrong_type_is_named(case, data, tmp_path_factory, no_model_loading, capsys):
    section, key, values = case
    code, err = _run_recipe(tmp_path_factory, _nested(section, key, data.draw(values)), capsys)
    assert code == 2 and f"$.{'.'.join((*section, key))}" in err


@CLI_SETTINGS
@given(case=st.sampled_from(RANGED), data=st.data())
def test_an_out_of_range_recipe_value_is_named(case, data, tmp_path_factory, no_model_loading, capsys):
    section, key, values = case
    code, err = _run_recipe(tmp_path_factory, _nested(section, key, data.draw(values)), capsys)
    assert code == 2 and key in err


FLAGS = [("--shots", "shots", _NEG_INT), ("--target-size", "target_size", _NOT_FRACTION),
         ("--sparsity", "--sparsity", _NOT_UNIT), ("--nsamples", "nsamples", _NEG_INT),
         ("--seqlen", "seqlen", _NEG_INT), ("--batch-size", "batch_size", _NEG_INT),
         ("--eval-windows", "windows", _NEG_INT), ("--damping-g", "damping_g", _NEG_FLOAT),
         ("--lora-rank", "rank", _NEG_INT), ("--lora-dropout", "dropout", _NOT_UNIT),
         ("--lora-lr", "lr", st.floats(max_value=0.0, allow_nan=False, allow_infinity=False))]
INT_FLAGS = ["--shots", "--nsamples", "--seqlen", "--batch-size", "--seed", "--eval-windows", "--lora-rank"]


@CLI_SETTINGS
@given(case=st.sampled_from(FLAGS), data=st.data())
def test_an_out_of_range_flag_is_named(case, data, no_model_loading, capsys):
    flag, key, values = case
    assert cli.main(["prune", "m", f"{flag}={data.draw(values)}"]) == 2
    assert key in capsys.readouterr().err


@CLI_SETTINGS
@given(flag=st.sampled_from(INT_FLAGS),
       value=st.one_of(st.text(string.ascii_letters, min_size=1, max_size=6),
                       st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: x != int(x))))
def test_a_flag_of_the_wrong_type_is_named(flag, value, no_model_loading, capsys):
    assert cli.main(["prune", "m", f"{flag}={value}"]) == 2
    assert f"argument {flag}" in capsys.readouterr().err


# -- the global threshold ---------------------------------------------------------------

#: Few distinct costs make ties common, across groups and modules.
COSTS = st.one_of(st.sampled_from([0.25, 0.5, 1.0, 2.0]), st.floats(1e-3, 10.0))


@st.composite
def candidate_sets(draw):
    """Row-col and element modules with positive (often tied) costs; ``(sets, shapes)``."""
    sets, shapes = [], []
    for _ in range(draw(st.integers(1, 4))):
        if draw(st.booleans()):
            r, c = draw(st.integers(1, 8)), draw(st.integers(1, 8))
            costs = {"rows": torch.tensor(draw(st.lists(COSTS, min_size=r, max_size=r)), dtype=torch.float64),
                     "cols": torch.tensor(draw(st.lists(COSTS, min_size=c, max_size=c)), dtype=torch.float64)}
            sets.append(CandidateSet(costs, lambda k, r=r, c=c: (r - k["rows"]) * (c - k["cols"])))
            shapes.append((r, c))
        else:
            n = draw(st.integers(1, 30))
            costs = {"elements": torch.tensor(draw(st.lists(COSTS, min_size=n, max_size=n)))}
            sets.append(CandidateSet(costs, lambda k, n=n: n - k["elements"]))
            shapes.append((n,))
    return sets, shapes


def _kept(shape: tuple[int, ...], selection: dict) -> int:
    if len(shape) == 2:
        return (shape[0] - int(selection["rows"].sum())) * (shape[1] - int(selection["cols"].sum()))
    return shape[0] - int(selection["elements"].sum())


@settings(max_examples=60, deadline=None)
@given(problem=candidate_sets(), fraction=st.floats(0.0, 1.0))
def test_the_global_threshold_lands_within_one_candidate(problem, fraction):
    sets, shapes = problem
    total = sum(s[0] * s[1] if len(s) == 2 else s[0] for s in shapes)
    target = round(fraction * total)
    selections, kept = global_threshold(sets, target)
    assert kept == sum(_kept(s, sel) for s, sel in zip(shapes, selections, strict=True))
    one_candidate = max(max(s) if len(s) == 2 else 1 for s in shapes)
    assert abs(kept - target) <= one_candidate
    chosen = torch.cat([cs.costs[g][sel[g]] for cs, sel in zip(sets, selections, strict=True) for g in cs.costs])
    left = torch.cat([cs.costs[g][~sel[g]] for cs, sel in zip(sets, selections, strict=True) for g in cs.costs])
    if len(chosen) and len(left):  # one threshold for all: nothing kept is cheaper than a removal
        assert float(chosen.max()) <= float(left.min())


@pytest.mark.parametrize("target", [0, 1])
def test_threshold_extremes_remove_everything_or_nothing(target):
    sets = [CandidateSet({"rows": torch.ones(3), "cols": torch.ones(4)},
                         lambda k: (3 - k["rows"]) * (4 - k["cols"]))]
    _, kept = global_threshold(sets, target * 12)
    assert kept == target * 12
