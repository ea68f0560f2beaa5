"""Benchmark runner: records, keys, resuming, failures (a fake prune, no model)."""

from __future__ import annotations

import json

import pytest
from fake_reports import fake_report

from bench import records, runner
from bench.profiles import BenchRun, Profile, expand


def _profile() -> Profile:
    base = {"model": "tiny-fake", "calibration": {"nsamples": 2, "seqlen": 8},
            "evaluation": {"windows": 2, "seqlen": 8}}
    runs = (
        {"id": "surgeon-rowcol-0.9", "method": "surgeon", "structure": "row-col", "target_size": 0.9,
         "shots": 2},
        {"id": "boom", "method": "magnitude", "structure": "element", "target_size": 0.5, "shots": 1},
        {"id": "magnitude-element-0.7", "method": "magnitude", "structure": "element",
         "target_size": 0.7, "shots": 1},
    )
    return Profile(name="test", description="", base=base, runs=runs)


class _Prune:
    """A fake ``prune``: fails on target 0.5, otherwise returns a synthetic report."""

    def __init__(self, ppl_after: float = 30.0):
        self.calls = []
        self.ppl_after = ppl_after

    def __call__(self, config, *, progress=True):
        self.calls.append(config.target_size)
        if config.target_size == 0.5:
            raise RuntimeError("kaboom")
        return fake_report(config, ppl_after=self.ppl_after)


def _execute(tmp_path, prune, *, force=False, only=None):
    runs = runner.select(expand(_profile(), data_dir="/somewhere"), only)
    planned = runner.plan(runs, tmp_path, force=force, validate=False)
    options = runner.RunOptions(results_dir=tmp_path, force=force, isolate=False, progress=False)
    return runner.execute(planned, options, prune_fn=prune, model_mb_fn=lambda c: 512.0)


def test_records_are_written_and_a_failure_does_not_stop_the_suite(tmp_path):
    prune = _Prune()
    new = _execute(tmp_path, prune)
    assert prune.calls == [0.9, 0.5, 0.7]
    assert [r["status"] for r in new] == ["ok", "failed", "ok"]
    files = sorted((tmp_path / "runs").glob("*.json"))
    assert len(files) == 3
    assert all(f.name.startswith("test__") for f in files)
    failed = next(r for r in new if r["status"] == "failed")
    assert "RuntimeError: kaboom" in failed["error"]
    assert "Traceback" in failed["traceback"]

    ok = json.loads(next(f for f in files if "surgeon-rowcol-0.9" in f.name).read_text())
    assert ok["ppl_before"] == 17.25 and ok["ppl_after"] == 30.0
    assert ok["achieved_size"] == pytest.approx(0.899)
    assert ok["model_mb"] == 512.0
    assert ok["curvature_mb"] == 20.0  # the largest over the two shots
    assert ok["peak_rss_mb"] == 1234.5
    # seconds: load 4, passes 4, algebra 2, solver 1, eval 6, total 19 -> other 2
    assert ok["seconds"] == pytest.approx({"load": 4.0, "passes": 4.0, "algebra": 2.0, "solver": 1.0,
                                           "lora": 0.0, "eval": 6.0, "other": 2.0, "total": 19.0})
    assert ok["outside_passes_ratio"] == pytest.approx(1 - 10.0 / 19.0)
    assert ok["outside_passes_ratio_excl_load"] == pytest.approx(1 - 10.0 / 15.0)
    assert ok["git"]["commit"] is None or len(ok["git"]["commit"]) == 40
    assert ok["machine"]["cpu_count"] >= 1
    assert ok["versions"]["torch"] == "2.13.0"
    assert len(ok["modules"]) == 28 and {"layer", "role", "remaining"} <= set(ok["modules"][0])
    assert ok["config"]["calibration"]["data"]["data_dir"] == "/somewhere"


def test_resume_skips_done_runs_and_retries_failed_ones(tmp_path):
    _execute(tmp_path, _Prune())
    prune = _Prune()
    new = _execute(tmp_path, prune)
    assert prune.calls == [0.5], "only the failed run is retried"
    assert [r["run_id"] for r in new] == ["boom"]

    prune = _Prune(ppl_after=31.0)
    _execute(tmp_path, prune, force=True, only="surgeon*")
    assert prune.calls == [0.9]
    assert len(list((tmp_path / "runs").glob("*surgeon-rowcol-0.9*.json"))) == 2
    latest = records.latest(records.load_all(tmp_path), "test")
    assert sorted(r["run_id"] for r in latest) == ["boom", "magnitude-element-0.7", "surgeon-rowcol-0.9"]
    surgeon = next(r for r in latest if r["run_id"] == "surgeon-rowcol-0.9")
    assert surgeon["ppl_after"] == 31.0, "the newest record of a run wins"
    boom = next(r for r in latest if r["run_id"] == "boom")
    assert boom["status"] == "failed"


def test_changed_settings_are_not_skipped(tmp_path):
    _execute(tmp_path, _Prune())
    changed = [BenchRun(r.profile, r.id, {**r.config, "damping_g": 0.1})
               for r in expand(_profile())]
    planned = runner.plan(changed, tmp_path, validate=False)
    assert not any(p.skip for p in planned)


def test_run_key_ignores_locations_but_not_settings():
    config = runner.normalise(expand(_profile())[0]).config
    key = records.run_key("p", "r", config)
    moved = {**config, "out": "/x",
             "calibration": {**config["calibration"],
                             "data": {**config["calibration"]["data"], "data_dir": "/d"}}}
    assert records.run_key("p", "r", moved) == key
    assert records.run_key("p", "r", {**config, "target_size": 0.8}) != key
    assert records.run_key("q", "r", config) != key
    assert len(key) == 16


def test_invalid_config_is_recorded_as_failed(tmp_path):
    bad = BenchRun("test", "bad", {"model": "m", "target_size": 1.5})
    planned = runner.plan([bad], tmp_path, validate=False)
    assert planned[0].error and "target_size" in planned[0].error
    new = runner.execute(planned, runner.RunOptions(results_dir=tmp_path, isolate=False),
                         prune_fn=_Prune(), model_mb_fn=lambda c: None)
    assert new[0]["status"] == "failed"


def test_isolated_worker_failure_is_recorded(tmp_path):
    """A run in a worker process that fails (unknown method) gives a failed record."""
    run = BenchRun("test", "bad-method", {"model": str(tmp_path / "no-such-model"),
                                          "method": "no-such-method", "structure": "element",
                                             "target_size": 0.5, "shots": 1})
    planned = runner.plan([run], tmp_path, validate=False)
    new = runner.execute(planned, runner.RunOptions(results_dir=tmp_path, progress=False),
                         model_mb_fn=lambda c: None)
    assert new[0]["status"] == "failed"
    assert "no-such-method" in new[0]["error"]


def test_select_globs_and_substrings():
    runs = expand(_profile())
    assert [r.id for r in runner.select(runs, "magnitude")] == ["magnitude-element-0.7"]
    assert [r.id for r in runner.select(runs, "*0.9,boom")] == ["surgeon-rowcol-0.9", "boom"]
    assert len(runner.select(runs, None)) == 3


def test_record_file_names_do_not_collide(tmp_path):
    record = {"profile": "p", "run_id": "a/b", "finished_at": "2024-01-02T03:04:05+00:00"}
    first, second = records.write(tmp_path, record), records.write(tmp_path, record)
    assert first != second
    assert first.name == "p__a_b__20240102T030405Z.json"
    assert [r["run_id"] for r in records.load_all(tmp_path)] == ["a/b", "a/b"]
