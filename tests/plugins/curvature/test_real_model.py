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
    # G (d_out^2) of every Linear and A (d_in^2) of every distinct input of SmolLM2 in
    # float32: q/k/v share one A, gate/up share one A (counted once)
    g = 2 * 576**2 + 2 * 192**2 + 2 * 1536**2 + 576**2
    a = 576**2 + 576**2 + 576**2 + 1536**2  # qkv, o, gate/up, down
    per_layer = g + a
    assert kfac["curvature_mb"] == pytest.approx(30 * per_layer * 4 / 2**20)
    # nearest-kfac's A factors depend on each module's own G: no input factor is shared
    unshared = g + 6 * 576**2 + 1536**2
    assert nearest["curvature_mb"] == pytest.approx(30 * unshared * 4 / 2**20)
