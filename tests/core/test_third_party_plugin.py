"""A real third-party plugin (tests/fixtures/toy_plugin), discovered through its .dist-info."""

from __future__ import annotations

import json

import pytest
import torch

from llm_surgeon import cli
from llm_surgeon.model import adapter_for
from llm_surgeon.registry import Kind, get_registry
from llm_surgeon.run.config import RunConfig
from llm_surgeon.run.validate import validate_run

TOY = "toy-activation-diag"


def test_toy_plugin_is_listed(toy_plugin_on_path, capsys):
    assert cli.main(["plugins", "--json"]) == 0
    items = json.loads(capsys.readouterr().out)
    toy = next(i for i in items if i["name"] == TOY)
    assert toy["kind"] == "curvature"
    assert toy["distribution"] == "llm-surgeon-toy" and toy["version"] == "0.1.0"
    assert toy["plugin"] == "toy"
    assert toy["description"].startswith("Toy plugin")
    # The built-ins are still there, from this package.
    assert any(i["name"] == "llama" and i["distribution"] == "llm-surgeon" for i in items)


def test_toy_plugin_absent_without_its_distribution(fresh_registry):
    assert TOY not in get_registry().names(Kind.CURVATURE)


def test_toy_plugin_usable_by_name(toy_plugin_on_path, make_tiny_model):
    """Resolve it by name with an option, run it, and check it against a brute-force oracle."""
    record = get_registry().get(Kind.CURVATURE, TOY)
    estimator = record.create(record.make_config(scale=2.0))
    model = make_tiny_model("llama", seed=2)
    modules = adapter_for(model).prunable_modules(model)
    batches = [torch.randint(0, model.config.vocab_size, (2, 9)) for _ in range(2)]
    result = estimator.estimate(model, modules, batches, progress=False)
    assert set(result.curvatures) == {pm.name for pm in modules}

    target = modules[3]  # o_proj of layer 0: its input is the attention output
    inputs = []
    handle = target.module.register_forward_hook(lambda m, i, o: inputs.append(i[0].reshape(-1, i[0].shape[-1])))
    with torch.no_grad():
        for b in batches:
            model(input_ids=b)
    handle.remove()
    x = torch.cat(inputs).double()
    expected = 2.0 * x.pow(2).mean(dim=0).expand(target.shape[0], -1)
    torch.testing.assert_close(result.curvatures[target.name].diag(), expected)


def test_toy_plugin_validates_in_a_run(toy_plugin_on_path, tiny_model_dir, wikitext_dir):
    registry = get_registry()
    methods = registry.names(Kind.METHOD)
    if not methods or not registry.names(Kind.STRUCTURE):
        pytest.skip("needs a registered method and structure")
    config = RunConfig(model=str(tiny_model_dir), method=methods[0], curvature=TOY,
                       structure=registry.names(Kind.STRUCTURE)[0], curvature_options={"scale": 0.5},
                       out=None)
    resolved = validate_run(config, check_model=False)
    assert resolved.curvature.distribution == "llm-surgeon-toy"
    assert resolved.curvature_config.scale == 0.5


def test_toy_plugin_prunes_through_the_cli(toy_plugin_on_path, tiny_model_dir, wikitext_dir, tmp_path, capsys):
    """End to end: magnitude scores replaced by the toy curvature, element structure."""
    pytest.importorskip("llm_surgeon.run.runner")
    registry = get_registry()
    if "magnitude" not in registry.names(Kind.METHOD) or "element" not in registry.names(Kind.STRUCTURE):
        pytest.skip("needs the magnitude method and the element structure")
    out = tmp_path / "out"
    code = cli.main(["prune", str(tiny_model_dir), "--method", "magnitude", "--curvature", TOY,
                     "--structure", "element", "--target-size", "0.5", "--shots", "1",
                     "--data-dir", str(wikitext_dir), "--seqlen", "32", "--nsamples", "4",
                     "--eval-windows", "2", "--out", str(out), "--no-progress", "--json"])
    assert code == 0, capsys.readouterr().err
    report = json.loads(capsys.readouterr().out)
    assert report["curvature"] == TOY
    assert report["achieved_size"] == pytest.approx(0.5, abs=0.01)
    assert (out / "report.json").is_file()
