"""``llm-surgeon curvature`` option routing and the Kronecker figure."""

from __future__ import annotations

import pytest
import torch

from llm_surgeon.cli import main
from llm_surgeon.cli.curvature import build_estimators, format_table
from llm_surgeon.errors import ConfigError


def test_options_go_to_the_estimators_that_take_them():
    built = build_estimators(["kfac", "nearest-kfac", "identity"], {"rank": 2, "fisher_type": "sampled"})
    configs = {name: config for name, _, config in built}
    assert configs["nearest-kfac"].rank == 2 and configs["nearest-kfac"].fisher_type == "sampled"
    assert configs["kfac"].fisher_type == "sampled" and configs["identity"] is None


def test_option_taken_by_no_estimator_is_an_error():
    with pytest.raises(ConfigError, match="rank"):
        build_estimators(["kfac"], {"rank": 2})
    with pytest.raises(ConfigError, match="did you mean 'kfac'"):
        build_estimators(["kfca"], {})


def test_cli_rejects_bad_curvature_before_loading(capsys):
    assert main(["curvature", "no-such-model", "--curvature", "kfca"]) == 2
    assert "did you mean" in capsys.readouterr().err


def test_table_lists_each_estimator():
    rows = [{"curvature": "kfac", "passes": 1, "seconds_passes": 2.0, "seconds_algebra": 0.1,
             "curvature_mb": 3.0, "peak_rss_mb": 100.0}]
    text = format_table(rows, {"model": "m", "modules": 7, "nsamples": 2, "seqlen": 8,
                               "split": "validation", "device": "cpu", "dtype": "float32"})
    assert "kfac" in text.splitlines()[-1] and "passes" in text


def test_figure_is_saved_and_errors_are_ordered(tmp_path):
    from llm_surgeon.analysis.kronecker_figure import save_figure

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path / "fig.png"
        result = save_figure(out, iterations=4)
    finally:
        torch.set_num_threads(threads)
    assert out.stat().st_size > 10_000
    err = {k: v["relative_frobenius"] for k, v in result["errors"].items()}
    assert err["nearest K-FAC R=1"] <= err["K-FAC"]
    assert err["nearest K-FAC R=3"] <= err["nearest K-FAC R=2"] <= err["nearest K-FAC R=1"]
