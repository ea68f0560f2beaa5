"""``--no-progress`` silences every tqdm bar in the process; bench keys survive added settings."""

from __future__ import annotations

import io

from tqdm.auto import tqdm

from llm_surgeon.util.progress import no_progress_bars


def _drawn(**kwargs) -> str:
    out = io.StringIO()
    for _ in tqdm(range(3), file=out, desc="library bar", **kwargs):
        pass
    return out.getvalue()


def test_library_bars_are_off_inside_and_back_after():
    assert "library bar" in _drawn()
    with no_progress_bars():
        assert _drawn() == ""
        assert _drawn(disable=False) == ""  # also a bar that asks to be shown
    assert "library bar" in _drawn()
    with no_progress_bars(enabled=False):
        assert "library bar" in _drawn()


def test_transformers_gguf_bar_uses_tqdm_that_is_silenced():
    """transformers' GGUF conversion bar is a plain ``tqdm.auto.tqdm``: covered by the patch."""
    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    out = io.StringIO()
    with no_progress_bars():
        for _ in gguf_utils.tqdm(range(2), file=out, desc="Converting and de-quantizing GGUF tensors..."):
            pass
    assert out.getvalue() == ""


def test_bench_keys_of_old_records_survive_the_added_settings():
    """Settings added later (bos, downstream) are left out of the key at their defaults."""
    from bench import records
    from llm_surgeon.run.config import RunConfig

    config = RunConfig(model="m").to_dict()
    old = {k: v for k, v in config.items() if k != "downstream"}
    for section in ("calibration", "evaluation"):
        old[section] = {k: v for k, v in old[section].items() if k != "bos"}
    assert records.run_key("cpu", "x", config) == records.run_key("cpu", "x", old)
    changed = RunConfig.from_dict({**config, "evaluation": {**config["evaluation"], "bos": "never"}})
    assert records.run_key("cpu", "x", changed.to_dict()) != records.run_key("cpu", "x", old)
