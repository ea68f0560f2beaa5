"""Record keys stay stable when settings are added: committed records are not rerun."""

from __future__ import annotations

from bench import profiles, records, runner


def test_committed_cpu_records_keep_their_keys():
    """Every run of the ``cpu`` profile with a committed successful record is planned as done."""
    stored = records.latest(records.load_all(runner.DEFAULT_RESULTS), "cpu")
    ok = {r["run_id"] for r in stored if r.get("status") == "ok"}
    planned = runner.plan(profiles.expand(profiles.get("cpu")), runner.DEFAULT_RESULTS, validate=False)
    assert ok, "no committed cpu records"
    assert {p.run.id for p in planned if p.skip} >= ok


def test_a_new_setting_changes_the_key_only_when_it_is_not_the_default():
    run = runner.normalise(profiles.expand(profiles.get("cpu"))[0])
    key = records.run_key(run.profile, run.id, run.config)
    old = {k: v for k, v in run.config.items() if k != "fidelity"}
    old["calibration"] = {k: v for k, v in old["calibration"].items() if k != "chat"}
    assert records.run_key(run.profile, run.id, old) == key
    on = {**run.config, "fidelity": {**run.config["fidelity"], "enabled": True}}
    assert records.run_key(run.profile, run.id, on) != key


def test_the_left_out_defaults_are_the_configs_defaults():
    """Each setting left out of keys at its default is left out at RunConfig's actual default."""
    from llm_surgeon.run.config import RunConfig

    defaults = RunConfig(model="_").to_dict()
    for path, default in records._ADDED_DEFAULTS.items():
        value = defaults
        for key in path:
            value = value[key]
        assert value == default, path
