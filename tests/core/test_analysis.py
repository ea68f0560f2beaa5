"""Run figures, sparsity summaries and ``llm-surgeon report`` on tiny models and synthetic reports."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import torch

from llm_surgeon.analysis.sparsity import (
    kept_by_layer_and_role,
    kept_fraction,
    ppl_per_shot,
    role_order,
)
from llm_surgeon.cli import main
from llm_surgeon.model.masks import load_masks

MODULES = [
    {"layer": 0, "role": "q", "parameters": 100, "remaining": 50},
    {"layer": 0, "role": "down", "parameters": 300, "remaining": 300},
    {"layer": 1, "role": "q", "parameters": 100, "remaining": 0},
    {"layer": 1, "role": "down", "parameters": 300, "remaining": 150},
]


def test_kept_fractions_by_layer_and_role():
    assert kept_fraction(MODULES, "layer") == {0: 350 / 400, 1: 150 / 400}
    assert kept_fraction(MODULES, "role") == {"q": 50 / 200, "down": 450 / 600}
    curves = kept_by_layer_and_role(MODULES)
    assert curves["q"] == {0: 0.5, 1: 0.0} and curves["down"] == {0: 1.0, 1: 0.5}
    assert role_order(["down", "zz", "q", "gate"]) == ["q", "gate", "down", "zz"]


def test_ppl_per_shot_reads_reports_and_records():
    report = {"ppl_before": 10.0, "ppl_after": 14.0,
              "shot_log": [{"shot": 1, "info": {"ppl": 11.0}}, {"shot": 2, "info": {}}]}
    assert ppl_per_shot(report) == [(0, 10.0), (1, 11.0), (2, 14.0)]
    record = {"ppl_before": 10.0, "ppl_after": 14.0, "shot_log": [{"shot": 1, "ppl": 12.0}, {"shot": 2}]}
    assert ppl_per_shot(record) == [(0, 10.0), (1, 12.0), (2, 14.0)]
    assert ppl_per_shot({"ppl_before": 1.0, "shot_log": [{"shot": 1, "info": {}}]}) is None


def _prune(tiny_model_dir, wikitext_dir, out, method, *extra):
    return main(["prune", str(tiny_model_dir), "--method", method, "--structure", "row-col",
                 "--target-size", "0.7", "--data-dir", str(wikitext_dir), "--seqlen", "32",
                 "--nsamples", "4", "--eval-windows", "3", "--out", str(out), "--no-progress", *extra])


@pytest.fixture(scope="module")
def two_runs(tiny_model_dir, wikitext_dir, tmp_path_factory):
    """A surgeon run evaluated every shot and a magnitude run, both on the tiny model."""
    root = tmp_path_factory.mktemp("runs")
    assert _prune(tiny_model_dir, wikitext_dir, root / "surgeon", "surgeon", "--shots", "3",
                  "--eval-every-shot") == 0
    assert _prune(tiny_model_dir, wikitext_dir, root / "magnitude", "magnitude", "--shots", "1") == 0
    return root / "surgeon", root / "magnitude"


def test_prune_writes_masks_and_figures(two_runs):
    from safetensors.torch import load_file

    surgeon, magnitude = two_runs
    names = {p.name for p in (surgeon / "figures").iterdir()}
    assert names == {"kept-per-layer.png", "kept-per-role.png", "ppl-per-shot.png"}
    assert {p.name for p in (magnitude / "figures").iterdir()} == {"kept-per-layer.png", "kept-per-role.png"}
    for path in (surgeon / "figures").iterdir():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5_000
    masks = load_masks(surgeon)
    weights = load_file(str(surgeon / "model.safetensors"))
    report = json.loads((surgeon / "report.json").read_text())
    assert set(masks) == {m["name"] for m in report["modules"]}
    for m in report["modules"]:
        mask = masks[m["name"]]
        assert list(mask.shape) == m["shape"] and int(mask.sum()) == m["remaining"]
        assert torch.equal(mask, weights[m["name"] + ".weight"] != 0)


def _table_rows(markdown: str) -> dict[str, list[str]]:
    rows = {}
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| ") and len(cells) == 12 and cells[0] != "run":
            rows[cells[0]] = cells
    return rows


def test_report_of_runs_and_a_bench_record(two_runs, tmp_path, capsys):
    surgeon, magnitude = two_runs
    record = json.loads((magnitude / "report.json").read_text())
    record.update(run_id="magnitude-record", seconds={"total": 12.5}, peak_rss_mb=321.0)
    record.pop("seconds_total")
    record_path = tmp_path / "record.json"
    record_path.write_text(json.dumps(record))
    out = tmp_path / "rep"
    assert main(["report", str(surgeon), str(magnitude), str(record_path), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out / "report.md")
    md = (out / "report.md").read_text()
    rows = _table_rows(md)
    assert set(rows) == {"surgeon", "magnitude", "magnitude-record"}
    report = json.loads((surgeon / "report.json").read_text())
    kept = sum(m["remaining"] for m in report["modules"]) / 1e6
    total = sum(m["parameters"] for m in report["modules"]) / 1e6
    assert rows["surgeon"][1:6] == ["surgeon", "kfac", "row-col", "0.7", f"{report['achieved_size']:.4f}"]
    assert rows["surgeon"][6] == f"{kept:.2f}M / {total:.2f}M"
    assert rows["surgeon"][8:10] == [f"{report['ppl_before']:.2f}", f"{report['ppl_after']:.2f}"]
    assert rows["magnitude-record"][10:] == ["12", "321"]  # bench records: seconds.total
    for image in re.findall(r"!\[[^]]*\]\(([^)]+)\)", md):
        assert (out / image).is_file(), image
    assert (out / "figures" / "sparsity.png").is_file() and (out / "figures" / "ppl-per-shot.png").is_file()
    assert (out / "figures" / "surgeon" / "ppl-per-shot.png").is_file()


def test_report_of_a_comparison_folder(tmp_path, capsys):
    run_dir = tmp_path / "cmp" / "runs" / "a"
    run_dir.mkdir(parents=True)
    report = {"method": "surgeon", "structure": "row-col", "target_size": 0.8, "modules": MODULES,
              "achieved_size": 0.5, "ppl_before": 10.0, "ppl_after": 12.0}
    (run_dir / "report.json").write_text(json.dumps(report))
    (tmp_path / "cmp" / "compare.json").write_text(json.dumps({"runs": [
        {"report": str(run_dir / "report.json")}, {"status": "failed"}]}))
    domains = {"calib_data": ["x", "y"], "eval_data": ["x", "y"], "dense_ppl": {"x": 10.0, "y": 20.0},
               "matrices": [{"method": "surgeon", "structure": "row-col", "target_size": 0.8,
                             "ppl": [[12.0, 30.0], [15.0, 22.0]],
                             "mask_equivalence": [[1.0, 0.9], [0.9, 1.0]]}]}
    (tmp_path / "cmp" / "domains.json").write_text(json.dumps(domains))
    out = tmp_path / "rep"
    assert main(["report", str(tmp_path / "cmp"), "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    assert "| x | 12.00 | 30.00 | 1.0000 | 0.9000 |" in md
    assert (out / "figures" / "domains-1.png").is_file()
    assert (out / "figures" / "a" / "kept-per-layer.png").is_file()
    # A comparison copied elsewhere (e.g. into bench/results) reads its own runs/ folder.
    shutil.copytree(tmp_path / "cmp", tmp_path / "copied")
    shutil.rmtree(tmp_path / "cmp")
    assert main(["report", str(tmp_path / "copied"), "--out", str(tmp_path / "rep2")]) == 0
    assert (tmp_path / "rep2" / "figures" / "a" / "kept-per-layer.png").is_file()


def test_report_of_something_else_is_a_usage_error(tmp_path, capsys):
    (tmp_path / "x.json").write_text(json.dumps({"hello": 1}))
    assert main(["report", str(tmp_path / "x.json"), "--out", str(tmp_path / "r")]) == 2
    assert "not a run folder" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "missing"), "--out", str(tmp_path / "r")]) == 2

