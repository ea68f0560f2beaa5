"""Datasets, calibration windows and evaluation windows."""

from __future__ import annotations

import pytest
import torch

from llm_surgeon.data import (
    CalibrationConfig,
    DataConfig,
    EvalConfig,
    calibration_windows,
    eval_windows,
    load_text,
    split_windows,
    tokenize,
)
from llm_surgeon.data.text import rows_to_raw
from llm_surgeon.errors import ConfigError


def test_load_text_reads_the_raw_file_as_is(wikitext_dir):
    text, info = load_text(DataConfig(data_dir=str(wikitext_dir), split="test"))
    assert text == (wikitext_dir / "wiki.test.raw").read_text(encoding="utf-8")
    assert info["split_used"] == "test" and "note" not in info
    assert info["source"].endswith("wiki.test.raw")


def test_valid_is_an_alias_of_validation(wikitext_dir):
    text, info = load_text(DataConfig(data_dir=str(wikitext_dir), split="valid"))
    assert info["split"] == "validation"
    assert text == (wikitext_dir / "wiki.valid.raw").read_text(encoding="utf-8")


def test_missing_train_falls_back_to_validation_with_a_note(wikitext_dir):
    text, info = load_text(DataConfig(data_dir=str(wikitext_dir), split="train"))
    assert info["split_used"] == "validation"
    assert "train split not available" in info["note"]
    assert text == (wikitext_dir / "wiki.valid.raw").read_text(encoding="utf-8")


def test_missing_test_split_is_an_error(tmp_path):
    (tmp_path / "wiki.valid.raw").write_text("hello\n")
    with pytest.raises(ConfigError, match="no test split"):
        load_text(DataConfig(data_dir=str(tmp_path), split="test"))


def test_unknown_dataset_did_you_mean(wikitext_dir):
    with pytest.raises(ConfigError, match="did you mean 'wikitext2'"):
        load_text(DataConfig(dataset="wikitxt2", data_dir=str(wikitext_dir)))


def test_text_dataset_from_file_and_folder(tmp_path):
    one = tmp_path / "corpus.txt"
    one.write_text("alpha beta\n")
    assert load_text(DataConfig(dataset="text", data_dir=str(one), split="train"))[0] == "alpha beta\n"

    folder = tmp_path / "split"
    folder.mkdir()
    (folder / "train.txt").write_text("train text\n")
    (folder / "test.txt").write_text("test text\n")
    assert load_text(DataConfig(dataset="text", data_dir=str(folder), split="test"))[0] == "test text\n"

    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "b.txt").write_text("second")
    (plain / "a.txt").write_text("first")
    assert load_text(DataConfig(dataset="text", data_dir=str(plain), split="test"))[0] == "first\n\nsecond"


def test_rows_to_raw_rebuilds_the_raw_file(make_text):
    """The hub's rows (blank lines as empty rows) rebuild the .raw file byte for byte."""
    raw = make_text(100)
    rows = ["" if line == " \n" else line for line in raw.splitlines(keepends=True)]
    assert rows_to_raw(rows) == raw


def test_rows_to_raw_on_the_real_validation_file(real_data_dir):
    raw = (real_data_dir / "wiki.valid.raw").read_text(encoding="utf-8")
    rows = ["" if line == " \n" else line for line in raw.splitlines(keepends=True)]
    assert rows_to_raw(rows) == raw


def test_calibration_windows_are_seeded_slices(tiny_tokenizer, wikitext_dir):
    cal = CalibrationConfig(data=DataConfig(data_dir=str(wikitext_dir), split="train"),
                            nsamples=6, seqlen=16, seed=3)
    windows, info = calibration_windows(tiny_tokenizer, cal)
    again, _ = calibration_windows(tiny_tokenizer, cal)
    other, _ = calibration_windows(tiny_tokenizer, CalibrationConfig(data=cal.data, nsamples=6, seqlen=16, seed=4))
    assert windows.shape == (6, 16) and windows.dtype == torch.long
    assert torch.equal(windows, again)
    assert not torch.equal(windows, other)
    assert info["note"] == "train split not available; calibrating on validation"
    assert info["split_used"] == "validation" and info["seed"] == 3
    # Every window is a contiguous slice of the tokenised validation split.
    text, _ = load_text(DataConfig(data_dir=str(wikitext_dir), split="validation"))
    ids = tokenize(tiny_tokenizer, text)
    starts = [s for s in range(ids.numel() - 15)]
    for w in windows:
        assert any(torch.equal(ids[s:s + 16], w) for s in starts)


def test_calibration_needs_enough_tokens(tiny_tokenizer, tmp_path):
    (tmp_path / "wiki.valid.raw").write_text("tiny\n")
    cal = CalibrationConfig(data=DataConfig(data_dir=str(tmp_path), split="validation"), seqlen=64)
    with pytest.raises(ConfigError, match="fewer than seqlen"):
        calibration_windows(tiny_tokenizer, cal)


def test_eval_windows_are_the_stream_cut_in_order(tiny_tokenizer, wikitext_dir):
    data = DataConfig(data_dir=str(wikitext_dir), split="test")
    ids = tokenize(tiny_tokenizer, (wikitext_dir / "wiki.test.raw").read_text(encoding="utf-8"))
    everything = eval_windows(tiny_tokenizer, EvalConfig(data=data, seqlen=32))
    assert everything.shape == (ids.numel() // 32, 32)
    assert torch.equal(everything.flatten(), ids[: everything.numel()])  # non-overlapping, in order
    first = eval_windows(tiny_tokenizer, EvalConfig(data=data, seqlen=32, windows=3))
    assert torch.equal(first, everything[:3])


def test_split_windows_drops_the_tail():
    ids = torch.arange(10)
    assert split_windows(ids, 3).tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    assert split_windows(ids, 3, limit=2).shape == (2, 3)
    assert split_windows(ids, 3, limit=100).shape == (3, 3)
