"""The ``ci`` benchmark profile end to end on the real SmolLM2-135M model (slow)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from bench import profiles, records, render, runner


def _wikitext_dir() -> str:
    repo = Path(__file__).resolve().parents[2]
    candidates = [os.environ.get("BENCH_DATA_DIR"), os.environ.get("LLM_SURGEON_WIKITEXT_DIR"),
                  str(repo.parent / "shared" / "data" / "wikitext-2-raw")]
    for folder in candidates:
        if folder and (Path(folder) / "wiki.test.raw").is_file():
            return folder
    pytest.skip("no local WikiText-2 (set BENCH_DATA_DIR to a folder with wiki.*.raw)")


@pytest.mark.real_model
def test_ci_profile_runs_end_to_end(tmp_path):
    runs = profiles.expand(profiles.get("ci"), data_dir=_wikitext_dir())
    planned = runner.plan(runs, tmp_path)
    assert not any(p.error for p in planned), [p.error for p in planned]
    new = runner.execute(planned, runner.RunOptions(results_dir=tmp_path, progress=False))

    assert [r["status"] for r in new] == ["ok"] * len(runs), [r.get("error") for r in new]
    for record in new:
        assert math.isfinite(record["ppl_before"]) and math.isfinite(record["ppl_after"])
        assert record["ppl_after"] >= record["ppl_before"] * 0.98
        assert record["achieved_size"] <= record["target_size"] + 1e-3
        assert record["seconds"]["total"] > 0 and 0 <= record["outside_passes_ratio"] <= 1
        assert record["peak_rss_mb"] > record["model_mb"] > 100
        assert len(record["modules"]) == 30 * 7
    surgeon = next(r for r in new if r["method"] == "surgeon")
    assert surgeon["curvature_mb"] > 0 and surgeon["seconds"]["passes"] > 0

    # Resuming skips everything; rendering produces the table and figures.
    assert all(p.skip for p in runner.plan(runs, tmp_path))
    text = render.render(tmp_path).read_text()
    assert all(r["run_id"] in text for r in new)
    assert (tmp_path / "figures" / "ci-ppl-vs-size.png").is_file()
    assert len(records.load_all(tmp_path)) == len(runs)
