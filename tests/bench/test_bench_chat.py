"""The ``chat`` profile: calibrations and fidelity in records, tables and the README block."""

from __future__ import annotations

from fake_reports import fake_report

from bench import profiles, records, render
from llm_surgeon.run.config import RunConfig


def _fidelity(i: int) -> dict:
    return {"kl": 0.1 * (i + 1), "match_rate": 0.9 - 0.01 * i, "positions": 2000, "question_accuracy": 0.5,
            "dense_question_accuracy": 0.75, "questions": 80, "heldout_prompts": 64, "response_tokens": 32,
            "kl_per_prompt": [0.1] * 64,
            "heldout": [{"prompt": f"p{j}", "dense": "d", "model": "m"} for j in range(64)],
            "answers": [{"id": f"q{j}", "question": "?", "answers": ["a"], "model": "a", "correct": True,
                         "dense": "a", "dense_correct": True} for j in range(80)]}


def test_chat_profile_runs_three_calibrations_with_fidelity():
    runs = profiles.expand(profiles.get("chat"), data_dir="/data")
    assert len(runs) == 15
    datasets = {r.id.rsplit("-", 1)[1]: RunConfig.from_dict(r.config).calibration.data.dataset for r in runs}
    assert datasets == {"wikitext2": "wikitext2", "chat": "chat", "mix": "wikitext2:0.5,chat:0.5"}
    assert all(RunConfig.from_dict(r.config).fidelity.enabled for r in runs)
    assert not profiles.get("chat").figures


def test_records_keep_the_fidelity_summary_and_examples(tmp_path):
    prov = {"git": {"commit": "b" * 40, "dirty": False}, "machine": {"platform": "Linux", "cpu_count": 2,
            "torch_threads": 2, "device": "cpu"}, "model_mb": 513.0, "wall_seconds": 1.0}
    stored = []
    for i, run in enumerate(profiles.expand(profiles.get("chat"))[:3]):
        config = RunConfig.from_dict(run.config)
        report = fake_report(config, ppl_after=40.0 + i)
        report["fidelity"] = _fidelity(i)
        report["calibration"]["data"] = {"dataset": config.calibration.data.dataset}
        report["seconds"].update(generation=30.0, fidelity=20.0)
        record = records.from_report(run, records.run_key(run.profile, run.id, config.to_dict()), report,
                                     started_at=records.now(), provenance=prov)
        records.write(tmp_path, record)
        stored.append(record)
    first = stored[0]
    assert first["fidelity"]["kl"] == 0.1 and "heldout" not in first["fidelity"]
    assert len(first["fidelity_heldout"]) == records.FIDELITY_EXAMPLES and len(first["fidelity_answers"]) == 80
    assert first["seconds"]["generation"] == 30.0 and first["seconds"]["fidelity"] == 20.0
    assert stored[2]["calibration"]["data"] == "wikitext2:0.5,chat:0.5"

    table = render.fidelity_table(stored)
    assert "| surgeon | row-col | 0.8 | `chat` | 41.00 | 0.200 | 89.0% | 40/80 (dense 60) |" in table
    path = render.render(tmp_path)
    text = path.read_text()
    assert "KL to dense" in text and "`wikitext2:0.5,chat:0.5`" in text
    assert not list((tmp_path / "figures").glob("chat-*.png"))  # the profile draws no figures
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- bench:chat:start -->\nold\n<!-- bench:chat:end -->\nrest\n")
    render.update_readme(readme, tmp_path)
    block = readme.read_text()
    assert "greedy match" in block and "old" not in block and block.endswith("rest\n")
