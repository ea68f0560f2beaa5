"""The deploy benchmark end to end on a tiny model: one record, a table, the README block."""

from __future__ import annotations

import json

import pytest

from bench import deploy, deploy_render
from bench.__main__ import main as bench_main
from llm_surgeon import cli


@pytest.fixture(scope="module")
def record(make_tiny_model, tiny_tokenizer, wikitext_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("deploy")
    dense = root / "tiny"
    make_tiny_model("llama", max_position_embeddings=1024).save_pretrained(dense)
    tiny_tokenizer.save_pretrained(dense)
    zeroed = root / "zeroed"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LLM_SURGEON_CACHE", "off")
        assert cli.main(["prune", str(dense), "--method", "magnitude", "--structure", "row-col",
                         "--target-size", "0.6", "--shots", "1", "--seqlen", "512", "--nsamples", "2",
                         "--eval-windows", "2", "--data-dir", str(wikitext_dir), "--out", str(zeroed),
                         "--no-progress"]) == 0
    results = root / "results"
    path = deploy.measure(root / "work", {"tiny-rowcol-0.6": zeroed}, dense_spec=str(dense),
                          data_dir=str(wikitext_dir), threads=1, repeats=2, decode_tokens=4, windows=2,
                          results_dir=results)
    return json.loads(path.read_text()), results


def test_the_record_has_every_variant_measured_with_plain_transformers(record):
    rec, _ = record
    assert [(r["name"], r["kind"]) for r in rec["variants"]] == [
        ("dense", "dense"), ("tiny-rowcol-0.6", "zeroed"), ("tiny-rowcol-0.6", "compact")]
    dense, zeroed, compact = rec["variants"]
    assert not any(r["llm_surgeon_imported"] for r in rec["variants"])
    assert dense["parameters"] == zeroed["parameters"] > compact["parameters"]
    assert compact["parameters"] == rec["exports"]["tiny-rowcol-0.6"]["num_parameters"]
    assert compact["safetensors_bytes"] < zeroed["safetensors_bytes"]
    assert compact["class"] == "SurgeonLlamaForCausalLM"
    for r in rec["variants"]:
        assert len(r["prefill_s_all"]) == 2 and r["prefill_s"] > 0 and r["decode_tokens_per_s"] > 0
        assert r["peak_rss_mb_after_load"] >= r["rss_mb_before_load"] > 0
        assert r["torch_threads"] == 1 and len(r["load_average_after"]) == 3


def test_compact_gives_the_zeroed_perplexity(record):
    rec, _ = record
    eq = rec["equivalence"]["tiny-rowcol-0.6"]
    assert eq["windows"] == 2 and eq["max_abs_dlogit"] <= 1e-4
    assert eq["ppl"] == pytest.approx(eq["reference_ppl"], rel=1e-5)
    # the zeroed model's perplexity in the pruning report, on the same windows
    assert eq["reference_ppl"] == pytest.approx(rec["pruned"]["tiny-rowcol-0.6"]["ppl_after"], rel=1e-4)


def test_render_writes_the_table_and_the_readme_block(record, tmp_path):
    _, results = record
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{deploy.README_MARKERS[0]}\nold\n{deploy.README_MARKERS[1]}\noutro\n")
    assert bench_main(["deploy", "render", "--results", str(results), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "old" not in text
    assert "| tiny-rowcol-0.6 compact |" in text and "Δlogit" in text
    assert (results / "DEPLOY.md").read_text().count("\n| ") == 4  # header + 3 variants
    assert deploy_render.table(deploy.latest(results)).splitlines()[2].startswith("| dense | 1.000 |")


def test_dims_runs_wait_for_their_structure():
    assert {s for _, s, _ in deploy.DEPLOY_RUNS.values()} == {"row-col", "dims"}
