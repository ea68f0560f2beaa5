"""Compact exports of hand-made zero patterns: sizes, exact logits, fresh-process loading.

Each case (``cut_cases.py``) writes zeros into a tiny random model; the expected sizes and
parameter counts are worked out there by shape arithmetic, independently of the export.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from cut_cases import CASES, build_case, expected_parameters, tiny_tokenizer
from isolated import load_fresh
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedModel

from llm_surgeon.errors import UnsupportedArchitectureError
from llm_surgeon.export import CompactPlan, build_compact, compact_model, load, save_compact
from llm_surgeon.export.modeling.surgeon_common import IndexedLinear

ATOL = 1e-5
NAMES = list(CASES)
PLAIN = [n for n in NAMES if CASES[n].plain]
REMOTE = [n for n in NAMES if not CASES[n].plain]


@dataclass
class Export:
    model: PreTrainedModel
    ids: torch.Tensor
    logits: torch.Tensor
    generated: torch.Tensor
    plan: CompactPlan
    folder: Path


@pytest.fixture(scope="session")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Export]:
    root = tmp_path_factory.mktemp("exports")
    out = {}
    for name in NAMES:
        model, ids = build_case(name)
        with torch.no_grad():
            logits = model(ids).logits
        generated = model.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=6, do_sample=False
        )
        folder = root / f"compact_{name}"
        plan = save_compact(model, tiny_tokenizer(), folder)
        torch.save({"ids": ids}, root / f"{name}.inputs.pt")
        out[name] = Export(model, ids, logits, generated, plan, folder)
    return out


@pytest.fixture(scope="session")
def fresh(exports: dict[str, Export], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Load every export once in a fresh isolated interpreter (see fresh_load.py)."""
    manifest = {
        name: {
            "folder": str(e.folder),
            "plain": e.plan.plain,
            "inputs": str(e.folder.parent / f"{name}.inputs.pt"),
        }
        for name, e in exports.items()
    }
    return load_fresh(manifest, tmp_path_factory.mktemp("fresh"))


@pytest.mark.parametrize("name", NAMES)
def test_plan_sizes(exports: dict[str, Export], name: str) -> None:
    plan, cuts = exports[name].plan, CASES[name].cuts
    assert plan.plain == CASES[name].plain
    assert plan.intermediate_sizes == [c.expect[0] for c in cuts]
    assert plan.num_attention_heads == [c.expect[1] for c in cuts]
    assert plan.num_key_value_heads == [c.expect[2] for c in cuts]
    for lp, cut in zip(plan.layers, cuts, strict=True):
        assert {p: lp.linears[p].live_shape for p in lp.compressed} == cut.compressed
    assert "index-compressed" in plan.summary()


@pytest.mark.parametrize("name", NAMES)
def test_parameter_count(exports: dict[str, Export], name: str) -> None:
    e = exports[name]
    expected = expected_parameters(e.model, CASES[name].cuts)
    assert e.plan.num_parameters == expected < e.plan.original_num_parameters
    assert sum(p.numel() for p in build_compact(e.model, e.plan).parameters()) == expected


@pytest.mark.parametrize("name", NAMES)
def test_fresh_process_plain_transformers(
    exports: dict[str, Export], fresh: dict[str, Any], name: str
) -> None:
    e, res = exports[name], fresh["cases"][name]
    assert "error" not in res, res.get("error")
    out = torch.load(res["output"])
    assert (out["logits"] - e.logits).abs().max().item() <= ATOL
    assert torch.equal(out["generated"], e.generated)
    assert res["num_parameters"] == expected_parameters(e.model, CASES[name].cuts)
    assert res["vocab_size"] == 100
    assert res["dtype"] == "torch.float32"
    module_file = Path(res["module_file"]).resolve()
    if e.plan.plain:
        assert res["class"] == type(e.model).__name__
        assert "transformers/models" in module_file.as_posix()
    else:
        assert res["class"].startswith("Surgeon")
        assert module_file.is_relative_to(Path(fresh["modules_cache"]).resolve())


def test_fresh_process_had_no_llm_surgeon(fresh: dict[str, Any]) -> None:
    assert fresh["llm_surgeon_blocked"]


@pytest.mark.parametrize("name", NAMES)
def test_load_without_remote_code(exports: dict[str, Export], name: str) -> None:
    e = exports[name]
    model, tokenizer = load(str(e.folder))
    assert tokenizer.convert_tokens_to_ids(["w5", "w7", "w99"]) == [5, 7, 99]
    if e.plan.plain:
        assert type(model) is type(e.model)
    else:
        assert type(model).__module__.startswith("llm_surgeon.export.modeling.")
    with torch.no_grad():
        assert (model(e.ids).logits - e.logits).abs().max().item() <= ATOL


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
@pytest.mark.parametrize("name", NAMES)
def test_cached_decoding_and_padding(exports: dict[str, Export], name: str, impl: str) -> None:
    """Prefill + token-by-token decoding with a cache, and a left-padded batch."""
    e = exports[name]
    compact = build_compact(e.model, e.plan)
    compact.set_attn_implementation(impl)
    ids, n = e.ids, e.ids.shape[1]
    with torch.no_grad():
        out = compact(ids[:, : n - 3], use_cache=True)
        steps = [out.logits] + [
            compact(ids[:, i : i + 1], cache=out.cache).logits for i in range(n - 3, n)
        ]
        assert (torch.cat(steps, dim=1) - e.logits).abs().max().item() <= ATOL
        mask = torch.ones_like(ids)
        mask[0, :3] = 0  # left padding in the first row
        e.model.set_attn_implementation(impl)
        ref = e.model(ids, attention_mask=mask).logits
        got = compact(ids, attention_mask=mask).logits
        e.model.set_attn_implementation("sdpa")
    assert (got - ref)[mask.bool()].abs().max().item() <= ATOL


@pytest.mark.parametrize("name", PLAIN)
def test_uniform_folder_is_plain(exports: dict[str, Export], name: str) -> None:
    e = exports[name]
    config = json.loads((e.folder / "config.json").read_text())
    assert "auto_map" not in config
    assert config["model_type"] == e.model.config.model_type
    assert not list(e.folder.glob("*.py"))
    width, heads, kv = CASES[name].cuts[0].expect
    if config["model_type"] == "opt":
        assert (config["ffn_dim"], config["num_attention_heads"]) == (width, heads)
    else:
        assert config["intermediate_size"] == width
        assert (config["num_attention_heads"], config["num_key_value_heads"]) == (heads, kv)
        assert config["head_dim"] == 8


@pytest.mark.parametrize("name", REMOTE)
def test_remote_code_folder(exports: dict[str, Export], name: str) -> None:
    e = exports[name]
    config = json.loads((e.folder / "config.json").read_text())
    family = "llama" if config["model_type"] != "surgeon_opt" else "opt"
    assert config["model_type"] == f"surgeon_{e.model.config.model_type}"
    assert set(config["auto_map"]) == {"AutoConfig", "AutoModelForCausalLM"}
    files = {p.name for p in e.folder.iterdir()}
    needed = {f"modeling_surgeon_{family}.py", f"configuration_surgeon_{family}.py"}
    assert needed | {"surgeon_common.py", "model.safetensors", "tokenizer.json", "export.json"} <= files
    assert json.loads((e.folder / "export.json").read_text())["num_parameters"] == e.plan.num_parameters
    cuts = CASES[name].cuts
    assert config["layer_intermediate_sizes"] == [c.expect[0] for c in cuts]
    assert config["layer_num_attention_heads"] == [c.expect[1] for c in cuts]
    assert config["layer_num_key_value_heads"] == [c.expect[2] for c in cuts]
    for records, cut in zip(config["layer_compressed_linears"], cuts, strict=True):
        assert {p: (r["out_live"], r["in_live"]) for p, r in records.items()} == cut.compressed


def test_bfloat16_is_kept() -> None:
    model, ids = build_case("llama")
    model = model.to(torch.bfloat16)
    compact = build_compact(model)
    assert compact.dtype == torch.bfloat16
    indexed = [m for m in compact.modules() if isinstance(m, IndexedLinear)]
    assert indexed and all(m.in_index.dtype == torch.long for m in indexed)
    with torch.no_grad():
        diff = (compact(ids).logits.float() - model(ids).logits.float()).abs().max().item()
    assert diff <= 0.05


def test_untouched_model_is_unchanged() -> None:
    torch.manual_seed(0)
    model = CASES["llama"].build().eval()
    plan = compact_model(model)
    assert plan.plain and plan.num_parameters == plan.original_num_parameters
    assert plan.intermediate_sizes == [48] * 3 and plan.num_key_value_heads == [2] * 3


def test_unsupported_model_names_what_is_not_supported() -> None:
    config = GPT2Config(n_embd=16, n_layer=1, n_head=2, vocab_size=50, n_positions=16)
    with pytest.raises(UnsupportedArchitectureError, match="model_type 'gpt2'.*supported: llama"):
        compact_model(GPT2LMHeadModel(config))


def test_a_compact_model_is_not_exported_again() -> None:
    model, _ = build_case("llama")
    with pytest.raises(UnsupportedArchitectureError, match="already a compact export"):
        compact_model(build_compact(model))
