"""The plugin examples of README.md run: each block is a plugin module used in a real run."""

from __future__ import annotations

import re
import types
from pathlib import Path

import pytest

from llm_surgeon.data import CalibrationConfig, DataConfig, EvalConfig
from llm_surgeon.run.config import RunConfig

README = Path(__file__).resolve().parents[2] / "README.md"
_BLOCK = re.compile(r"<!-- readme-example: (\w+) -->\s*```python\n(.*?)```", re.S)


def _examples() -> dict[str, str]:
    return dict(_BLOCK.findall(README.read_text(encoding="utf-8")))


def test_readme_has_one_example_per_hook():
    assert set(_examples()) == {"curvature", "structure", "method", "architecture"}


@pytest.fixture
def example_registry(monkeypatch):
    """Built-ins plus the four README examples, as the process-wide registry."""
    from llm_surgeon.registry import registry as registry_module

    reg = registry_module.Registry()
    reg.load_entry_points()
    for kind, source in _examples().items():
        module = types.ModuleType(f"readme_{kind}_example")
        exec(compile(source, f"README.md:{kind}", "exec"), module.__dict__)
        reg.add_plugin(module, f"readme-{kind}", "readme-examples", "0")
    monkeypatch.setattr(registry_module, "_registry", reg)
    monkeypatch.setenv("LLM_SURGEON_CACHE", "off")
    return reg


def _config(model_dir, data_dir, **kwargs) -> RunConfig:
    data = str(data_dir)
    return RunConfig(
        model=str(model_dir), shots=1,
        calibration=CalibrationConfig(data=DataConfig(data_dir=data, split="train"), nsamples=4, seqlen=16),
        evaluation=EvalConfig(data=DataConfig(data_dir=data, split="test"), seqlen=16, windows=2),
        **kwargs,
    )


@pytest.mark.parametrize(
    ("method", "curvature", "structure", "target", "tolerance"),
    [
        ("surgeon", "input-moment", "row-col", 0.7, 0.03),
        ("magnitude", None, "diag-row", 0.75, 0.03),
        ("random", None, "element", 0.5, 0.001),
    ],
)
def test_examples_prune_a_tiny_model(example_registry, tiny_model_dir, wikitext_dir,
                                     method, curvature, structure, target, tolerance):
    from llm_surgeon.run.runner import prune

    report = prune(_config(tiny_model_dir, wikitext_dir, method=method, curvature=curvature,
                           structure=structure, target_size=target), progress=False)
    assert report["achieved_size"] == pytest.approx(target, abs=tolerance)
    assert report["ppl_after"] > 0


def test_architecture_example_prunes_phi(example_registry, tmp_path, tiny_tokenizer, wikitext_dir):
    import torch
    import transformers

    from llm_surgeon.run.runner import prune

    config = transformers.PhiConfig(vocab_size=len(tiny_tokenizer), hidden_size=16, intermediate_size=24,
                                    num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=64)
    torch.manual_seed(0)
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path / "phi")
    tiny_tokenizer.save_pretrained(tmp_path / "phi")
    report = prune(_config(tmp_path / "phi", wikitext_dir, method="magnitude", structure="element",
                           target_size=0.5), progress=False)
    assert report["achieved_size"] == pytest.approx(0.5, abs=0.001)
    assert {m["role"] for m in report["modules"]} == {"q", "k", "v", "o", "fc1", "fc2"}
