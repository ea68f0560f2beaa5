"""The curvature command on SmolLM2-135M (slow; ``-m real_model``)."""

from __future__ import annotations

import json

import pytest

from llm_surgeon import cli


@pytest.mark.real_model
def test_curvature_command_on_smollm2(real_data_dir, tmp_path):
    out = tmp_path / "curvature.json"
    code = cli.main(["curvature", "smollm2-135m", "--curvature", "kfac,nearest-kfac", "--iterations", "1",
                     "--data-dir", str(real_data_dir), "--nsamples", "1", "--seqlen", "64",
                     "--json", str(out), "--no-progress"])
    assert code == 0
    report = json.loads(out.read_text())
    assert report["modules"] == 30 * 7 and report["split"] == "validation"
    kfac, nearest = report["results"]
    assert (kfac["passes"], nearest["passes"]) == (1, 3)
    # G (d_out^2) and A (d_in^2) of every Linear of SmolLM2 in float32
    per_layer = 2 * 576**2 + 2 * 192**2 + 2 * 1536**2 + 576**2 + 6 * 576**2 + 1536**2
    assert kfac["curvature_mb"] == pytest.approx(30 * per_layer * 4 / 2**20)
    assert nearest["curvature_mb"] == pytest.approx(kfac["curvature_mb"])
