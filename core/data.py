"""Text data: dataset splits, calibration windows and evaluation windows.

Two datasets are known:

* ``wikitext2``: WikiText-2 raw. From a local folder of ``wiki.{train,valid,test}.raw``
  files (read as they are), or, without ``data_dir``, from the Hugging Face hub
  (``Salesforce/wikitext``, ``wikitext-2-raw-v1``) rebuilt byte for byte into the
  ``.raw`` text: every empty row becomes a line holding one space.
* ``text``: local text files. ``data_dir`` is one file (used for every split) or a
  folder holding files named after the split (``train.txt``, ``wiki.valid.raw``,
  ``validation.txt``...); a folder without split names uses all its ``*.txt`` files.

A split is read as one string and tokenised once with the tokenizer's defaults.
When the train split is missing it is replaced by the validation split, and the
returned info says so.
"""

from __future__ import annotations

import difflib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from llm_surgeon.config import CalibrationConfig, DataConfig, EvalConfig
from llm_surgeon.errors import ConfigError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

DATASETS = ("wikitext2", "text")
_DATASET_ALIASES = {"wikitext-2": "wikitext2", "wikitext2-raw": "wikitext2", "wikitext": "wikitext2"}
SPLITS = ("train", "validation", "test")
#: File-name stems each split is known by.
_SPLIT_STEMS = {"train": ("train",), "validation": ("valid", "validation", "val"), "test": ("test",)}
_TEXT_SUFFIXES = (".raw", ".txt", ".text")
_HUB_WIKITEXT = ("Salesforce/wikitext", "wikitext-2-raw-v1")


def dataset_name(name: str) -> str:
    """Canonical dataset name; a :class:`ConfigError` with a did-you-mean if unknown."""
    name = _DATASET_ALIASES.get(name, name)
    if name not in DATASETS:
        close = difflib.get_close_matches(name, list(DATASETS) + list(_DATASET_ALIASES), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown dataset {name!r}{hint} (available: {', '.join(DATASETS)})")
    return name


def split_name(split: str) -> str:
    """Canonical split name (``valid``/``val`` -> ``validation``)."""
    for canonical, stems in _SPLIT_STEMS.items():
        if split == canonical or split in stems:
            return canonical
    raise ConfigError(f"unknown split {split!r} (valid: {', '.join(SPLITS)})")


def _split_file(folder: Path, split: str) -> Path | None:
    """The file of ``split`` in ``folder``: ``wiki.valid.raw``, ``validation.txt``..."""
    stems = _SPLIT_STEMS[split]
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.suffix not in _TEXT_SUFFIXES:
            continue
        parts = path.name.split(".")[:-1]
        if any(stem in parts for stem in stems):
            return path
    return None


def _has_split_files(folder: Path) -> bool:
    return any(_split_file(folder, s) is not None for s in SPLITS)


def _read(path: Path) -> str:
    with open(path, encoding="utf-8", newline="") as f:
        return f.read()


def rows_to_raw(rows: list[str]) -> str:
    """Rebuild a WikiText ``.raw`` file from the hub's rows (empty row -> ``" \\n"``)."""
    return "".join(" \n" if row == "" else row for row in rows)


def _hub_wikitext(split: str) -> str:
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - datasets is a dependency
        raise ConfigError("loading WikiText-2 from the hub needs the `datasets` package") from exc
    try:
        ds = datasets.load_dataset(*_HUB_WIKITEXT, split=split)
    except Exception as exc:
        raise ConfigError(
            f"could not load WikiText-2 ({split}) from the hub: {exc}. "
            "Give --data-dir with local wiki.{train,valid,test}.raw files instead."
        ) from exc
    return rows_to_raw(list(ds["text"]))


def _local_text(data: DataConfig, split: str) -> tuple[str | None, str]:
    """``(text or None if the split is missing, description of the source)``."""
    if data.data_dir is None:
        raise ConfigError(f"dataset {data.dataset!r} needs --data-dir (a text file or a folder)")
    root = Path(data.data_dir).expanduser()
    if root.is_file():
        return _read(root), str(root)
    if not root.is_dir():
        raise ConfigError(f"data path {str(root)!r} does not exist")
    path = _split_file(root, split)
    if path is not None:
        return _read(path), str(path)
    if data.dataset == "text" and not _has_split_files(root):
        files = sorted(p for p in root.iterdir() if p.is_file() and p.suffix in _TEXT_SUFFIXES)
        if not files:
            raise ConfigError(f"no text files ({', '.join(_TEXT_SUFFIXES)}) in {str(root)!r}")
        return "\n\n".join(_read(p) for p in files), f"{root} ({len(files)} files)"
    return None, str(root)


def _load_split(data: DataConfig, split: str) -> tuple[str | None, str]:
    dataset = dataset_name(data.dataset)
    if dataset == "wikitext2" and data.data_dir is None:
        return _hub_wikitext(split), f"hub:{_HUB_WIKITEXT[0]}/{_HUB_WIKITEXT[1]}"
    return _local_text(data, split)


def load_text(data: DataConfig) -> tuple[str, dict[str, Any]]:
    """The text of one dataset split, as a single string.

    A missing ``train`` split falls back to ``validation``.

    Args:
        data: dataset, local folder and split.

    Returns:
        ``(text, info)``; ``info`` holds ``dataset``, ``split``, ``split_used``,
        ``source``, ``characters`` and, after a fallback, a ``note``.

    Raises:
        ConfigError: unknown dataset or split, or the split is missing (other than train).
    """
    dataset = dataset_name(data.dataset)
    split = split_name(data.split)
    text, source = _load_split(data, split)
    info: dict[str, Any] = {"dataset": dataset, "split": split, "split_used": split}
    if text is None and split == "train":
        text, source = _load_split(data, "validation")
        if text is not None:
            info["split_used"] = "validation"
            info["note"] = "train split not available; using validation"
            logger.warning("%s: train split not found in %s; using validation", dataset, source)
    if text is None:
        raise ConfigError(f"{dataset}: no {split} split in {source}")
    info["source"] = source
    info["characters"] = len(text)
    return text, info


def tokenize(tokenizer: PreTrainedTokenizerBase, text: str) -> Tensor:
    """Token ids of ``text`` tokenised once with the tokenizer's defaults, ``(n_tokens,)``."""
    import transformers

    # The whole split is one long sequence on purpose; silence the length warning.
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        ids = tokenizer(text, return_tensors="pt")["input_ids"]
    finally:
        transformers.logging.set_verbosity(verbosity)
    return ids[0].to(torch.long)


def calibration_windows(tokenizer: PreTrainedTokenizerBase, cal: CalibrationConfig) -> tuple[Tensor, dict[str, Any]]:
    """Random windows of the calibration split, reproducible from ``cal.seed``.

    Each window starts at a uniformly random token position of the tokenised
    split (windows may overlap).

    Args:
        tokenizer: the model's tokenizer.
        cal: dataset, number of windows and their length, seed.

    Returns:
        ``(windows, info)`` with ``windows: (nsamples, seqlen)`` int64 token ids on the
        CPU and ``info`` as from :func:`load_text` plus ``tokens``, ``nsamples``,
        ``seqlen``, ``seed``. A fallback from train says
        ``"train split not available; calibrating on validation"``.
    """
    text, info = load_text(cal.data)
    if info.get("split_used") != info["split"]:
        info["note"] = f"{info['split']} split not available; calibrating on {info['split_used']}"
    ids = tokenize(tokenizer, text)
    if ids.numel() <= cal.seqlen:
        raise ConfigError(
            f"calibration split has {ids.numel()} tokens, fewer than seqlen + 1 = {cal.seqlen + 1}"
        )
    gen = torch.Generator().manual_seed(cal.seed)
    starts = torch.randint(0, ids.numel() - cal.seqlen, (cal.nsamples,), generator=gen)
    windows = torch.stack([ids[s : s + cal.seqlen] for s in starts.tolist()])
    info.update(tokens=ids.numel(), nsamples=cal.nsamples, seqlen=cal.seqlen, seed=cal.seed)
    return windows, info


def split_windows(ids: Tensor, seqlen: int, limit: int | None = None) -> Tensor:
    """Cut ``ids: (n_tokens,)`` into non-overlapping windows ``(n_windows, seqlen)``.

    The incomplete tail is dropped; ``limit`` keeps only the first windows.
    """
    n = ids.numel() // seqlen
    if limit is not None:
        n = min(n, limit)
    return ids[: n * seqlen].reshape(n, seqlen)


def eval_windows(tokenizer: PreTrainedTokenizerBase, ev: EvalConfig) -> Tensor:
    """Evaluation windows: the split joined as one string, tokenised once, cut in order.

    Args:
        tokenizer: the model's tokenizer.
        ev: dataset, window length and optional limit on the number of windows.

    Returns:
        ``(n_windows, seqlen)`` int64 token ids on the CPU: the first ``ev.windows``
        (all if ``None``) non-overlapping windows.
    """
    text, _ = load_text(ev.data)
    windows = split_windows(tokenize(tokenizer, text), ev.seqlen, ev.windows)
    if windows.shape[0] == 0:
        raise ConfigError(f"evaluation split is shorter than one window of {ev.seqlen} tokens")
    return windows
