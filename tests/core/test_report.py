"""Atomic output folders, JSON writing, resource usage and versions."""

from __future__ import annotations

import json
import math
from enum import Enum

import pytest
import torch

from llm_surgeon.errors import ConfigError
from llm_surgeon.util.io import atomic_output, write_json
from llm_surgeon.util.resources import library_versions, peak_rss_mb


def test_atomic_output_appears_only_on_success(tmp_path):
    final = tmp_path / "run"
    with atomic_output(final) as tmp:
        assert tmp.parent == tmp_path and tmp != final
        (tmp / "report.json").write_text("{}")
        assert not final.exists()
    assert (final / "report.json").read_text() == "{}"
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_failed_run_leaves_nothing(tmp_path):
    final = tmp_path / "run"
    with pytest.raises(RuntimeError), atomic_output(final) as tmp:
        (tmp / "model.safetensors").write_text("half")
        raise RuntimeError("crash")
    assert list(tmp_path.iterdir()) == []


def test_refuses_non_empty_folder_unless_overwrite(tmp_path):
    final = tmp_path / "run"
    final.mkdir()
    (final / "old.txt").write_text("old")
    with pytest.raises(ConfigError, match="--overwrite"), atomic_output(final):
        pass
    assert (final / "old.txt").exists()

    with pytest.raises(RuntimeError), atomic_output(final, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("new")
        raise RuntimeError("crash")
    assert [p.name for p in final.iterdir()] == ["old.txt"]  # failure keeps the old output

    with atomic_output(final, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert [p.name for p in final.iterdir()] == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_empty_existing_folder_is_fine(tmp_path):
    (tmp_path / "run").mkdir()
    with atomic_output(tmp_path / "run") as tmp:
        (tmp / "a").write_text("a")
    assert (tmp_path / "run" / "a").exists()


def test_write_json_is_strict_and_converts(tmp_path):
    class Color(str, Enum):
        RED = "red"

    path = tmp_path / "sub" / "r.json"
    write_json(path, {"ppl": math.inf, "nan": math.nan, "enum": Color.RED, "t": torch.tensor([1.5]),
                      "path": tmp_path, "tuple": (1, 2)})
    data = json.loads(path.read_text())
    assert data == {"ppl": None, "nan": None, "enum": "red", "t": [1.5], "path": str(tmp_path), "tuple": [1, 2]}
    assert [p.name for p in path.parent.iterdir()] == ["r.json"]


def test_peak_rss_and_versions():
    assert peak_rss_mb() > 10
    versions = library_versions()
    assert set(versions) == {"python", "torch", "transformers", "llm-surgeon", "peft", "pluggy"}
    assert versions["torch"].startswith(torch.__version__.split("+")[0])
