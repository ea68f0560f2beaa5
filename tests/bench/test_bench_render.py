"""Rendering of synthetic records: Markdown table with the numbers, PNG figures."""

from __future__ import annotations

import attrs
import pytest
from fake_reports import fake_report

from bench import figures, records, render
from bench.profiles import BenchRun, expand, get
from llm_surgeon.run.config import RunConfig

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _store(tmp_path, profile="quick"):
    """Records for every run of ``profile`` (one failed), with distinct perplexities."""
    stored = []
    prov = {"git": {"commit": "a" * 40, "dirty": True},
            "machine": {"platform": "Linux-test", "cpu_count": 2, "torch_threads": 2, "device": "cpu"},
            "model_mb": 513.0, "wall_seconds": 1.0}
    for i, run in enumerate(expand(get(profile))):
        config = RunConfig.from_dict(run.config)
        key = records.run_key(run.profile, run.id, config.to_dict())
        if run.id == "wanda-element-0.7":
            record = records.failed(run, key, RuntimeError("no wanda today"), started_at=records.now(),
                                    provenance=prov)
        else:
            if run.id == "surgeon-element-0.7":  # a multi-shot run evaluated after every shot
                config = attrs.evolve(config, shots=3)
            report = fake_report(config, ppl_after=20.0 + 1.5 * i, per_shot=config.shots > 1)
            record = records.from_report(run, key, report, started_at=records.now(), provenance=prov)
        records.write(tmp_path, record)
        stored.append(record)
    return stored


def test_results_markdown_contains_the_numbers(tmp_path):
    stored = _store(tmp_path)
    path = render.render(tmp_path)
    text = path.read_text()
    assert path == tmp_path / "RESULTS.md"
    assert "## Profile `quick`" in text
    for record in stored:
        assert record["run_id"] in text
        if record["status"] == "ok":
            assert f"| {record['ppl_after']:.2f} |" in text
            assert f"| {100 * record['outside_passes_ratio']:.0f}% | " \
                   f"{100 * record['outside_passes_ratio_excl_load']:.0f}% |" in text
    assert "wanda-element-0.7 (failed)" in text and "no wanda today" in text
    assert "Dense perplexity: 17.25." in text
    assert "16 × 256 tokens of WikiText-2 validation" in text
    assert "16 windows × 512 tokens of WikiText-2 test" in text
    assert "aaaaaaaaaa (with uncommitted changes)" in text
    assert "513 MB" in text
    # rows follow the profile's order
    ids = [r["id"] for r in get("quick").runs]
    positions = [text.index(f"| {i}") for i in ids]
    assert positions == sorted(positions)


def test_figures_are_png_files(tmp_path):
    _store(tmp_path)
    render.render(tmp_path)
    text = (tmp_path / "RESULTS.md").read_text()
    for name in ("quick-ppl-vs-size.png", "quick-sparsity.png", "quick-ppl-per-shot.png"):
        png = tmp_path / "figures" / name
        assert png.read_bytes()[:8] == PNG_MAGIC, name
        assert png.stat().st_size > 5000
        assert f"(figures/{name})" in text


def test_table_of_one_record_has_one_row_per_record():
    config = RunConfig(model="m", method="surgeon", structure="row-col", target_size=0.8, shots=2)
    run = BenchRun("p", "r", config.to_dict())
    record = records.from_report(run, "k", fake_report(config, ppl_after=42.5),
                                 started_at=records.now(), provenance={})
    lines = render.table([record, record]).splitlines()
    assert len(lines) == 4
    cells = [c.strip() for c in lines[2].strip("|").split("|")]
    assert len(cells) == len(render._COLUMNS)
    assert cells[:8] == ["r", "surgeon", "kfac", "row-col", "0.8", "0.7990", "2", "42.50"]
    assert cells[8] == "19"  # total seconds: 12 + 3.5 * 2


def test_remaining_by_layer_and_role_matches_a_direct_count():
    modules = [
        {"layer": 0, "role": "q", "parameters": 100, "remaining": 50},
        {"layer": 0, "role": "up", "parameters": 300, "remaining": 300},
        {"layer": 1, "role": "q", "parameters": 100, "remaining": 10},
        {"layer": 1, "role": "up", "parameters": 300, "remaining": 30},
    ]
    curves = figures.remaining_by_layer_and_role(modules)
    assert curves["all"] == pytest.approx({0: 350 / 400, 1: 40 / 400})
    assert curves["q"] == pytest.approx({0: 0.5, 1: 0.1})
    assert curves["up"] == pytest.approx({0: 1.0, 1: 0.1})


def test_shot_curve_starts_dense_and_ends_with_the_final_ppl():
    record = {"ppl_before": 10.0, "ppl_after": 14.0,
              "shot_log": [{"shot": 1, "ppl": 11.0}, {"shot": 2, "ppl": 12.0}, {"shot": 3, "ppl": None}]}
    assert figures.shot_curve(record) == [(0, 10.0), (1, 11.0), (2, 12.0), (3, 14.0)]
    assert figures.shot_curve({"ppl_before": 1.0, "shot_log": [{"shot": 1}]}) is None


def test_nothing_to_draw_writes_nothing(tmp_path):
    assert figures.ppl_vs_size([], tmp_path / "a.png") is None
    assert figures.sparsity([{"status": "failed", "method": "surgeon"}], tmp_path / "b.png") is None
    assert not list(tmp_path.iterdir())
    text = render.render(tmp_path).read_text()
    assert "No records yet" in text


def test_readme_block_is_rewritten_between_its_markers(tmp_path):
    stored = _store(tmp_path / "results")
    readme = tmp_path / "README.md"
    start, end = render.readme_markers("quick")
    readme.write_text(f"# Title\n\nbefore\n{start}\nold table\n{end}\nafter\n")
    assert render.readme_profiles(readme.read_text()) == ["quick"]
    assert render.update_readme(readme, tmp_path / "results")
    text = readme.read_text()
    assert text.startswith("# Title\n\nbefore\n") and text.endswith(f"{end}\nafter\n")
    assert "old table" not in text
    for record in stored:
        if record["status"] == "ok":
            assert f"| {record['ppl_after']:.2f} |" in text
    assert "no wanda today" not in text  # failed runs stay out of the README
    assert "](results/figures/quick-ppl-vs-size.png)" in text
    # a second rewrite changes nothing
    assert not render.update_readme(readme, tmp_path / "results")


def test_readme_without_markers_is_refused(tmp_path):
    _store(tmp_path / "results")
    readme = tmp_path / "README.md"
    readme.write_text("# Title\n")
    with pytest.raises(ValueError, match="bench:quick:start"):
        render.update_readme(readme, tmp_path / "results", ["quick"])
    assert readme.read_text() == "# Title\n"


def test_ablations_readme_block_names_what_changed(tmp_path):
    prov = {"git": {"commit": "b" * 40, "dirty": False}, "machine": {}, "wall_seconds": 1.0}
    wanted = ("surgeon-rowcol-0.8-kfac", "surgeon-rowcol-0.8-nkfac-r2", "surgeon-rowcol-0.8-calib8",
              "surgeon-element-0.5-chunkrow")
    for run in expand(get("ablations")):
        if run.id not in wanted:
            continue
        config = RunConfig.from_dict(run.config)
        report = fake_report(config, ppl_after=40.0 + len(run.id))
        nearest = config.curvature == "nearest-kfac"
        for s in report["shot_log"]:  # nearest-K-FAC: 1 + 2 x 2 passes, warm start after shot 1
            s["info"]["curvature_passes"] = (5 - (s["shot"] > 1)) if nearest else 1
        report.update(damping={"g": 0.1, "a": 0.1}, curvature=config.curvature or "kfac")
        key = records.run_key(run.profile, run.id, config.to_dict())
        records.write(tmp_path / "results", records.from_report(run, key, report, started_at=records.now(),
                                                                 provenance=prov))
    readme = tmp_path / "README.md"
    start, end = render.readme_markers("ablations")
    readme.write_text(f"{start}\n{end}\n")
    render.update_readme(readme, tmp_path / "results")
    rows = {line.split(" | ")[0][2:]: line for line in readme.read_text().splitlines()
            if line.startswith("| surgeon-")}
    assert set(rows) == set(wanted)
    assert "| nearest-kfac, rank 2 | row-col | 0.8 | 5 | 32 × 512 | 0.1 / 0.1 |" in rows[wanted[1]]
    assert f"| {40.0 + len(wanted[1]):.2f} | 4.2 |" in rows[wanted[1]]  # (5 + 4 * 4) / 5 passes
    assert "| kfac | row-col | 0.8 | 5 | 32 × 512 |" in rows[wanted[0]] and "| 1.0 |" in rows[wanted[0]]
    assert "| 8 × 512 |" in rows[wanted[2]]
    assert "| element (chunk_size row) | 0.5 |" in rows[wanted[3]]
    assert "ppl-vs-size" not in readme.read_text()  # one setting per run: no size sweep figure
