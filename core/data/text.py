"""Text data: the known datasets and their splits, read as one string each.

Five kinds of datasets are known:

* ``wikitext2``: WikiText-2 raw. From a local folder of ``wiki.{train,valid,test}.raw``
  files (read as they are), or, without ``data_dir``, from the Hugging Face hub
  (``Salesforce/wikitext``, ``wikitext-2-raw-v1``) rebuilt byte for byte into the
  ``.raw`` text: every empty row becomes a line holding one space. When the hub is not
  reachable, its local cache is used, and without one the copy shipped with llm-surgeon.
* ``wikitext2-bundled``: that shipped copy (validation and test splits, CC BY-SA 3.0;
  ``llm_surgeon/data/wikitext2/LICENSE.md``), without asking the hub.
* ``text``: local text files. ``data_dir`` is one file (used for every split) or a
  folder holding files named after the split (``train.txt``, ``wiki.valid.raw``,
  ``validation.txt``...); a folder without split names uses all its ``*.txt`` files.
* ``python-stdlib`` and ``manpages-de``: the domains of :mod:`llm_surgeon.data.domains`
  (the interpreter's standard library; German man pages), split by path hash into a
  calibration part (``train``, ``validation``) and an evaluation part (``test``).

A split is read as one string and tokenised once with the tokenizer's defaults.
When the train split is missing it is replaced by the validation split, and the
returned info says so.
"""

from __future__ import annotations

import difflib
import logging
from pathlib import Path
from typing import Any

from llm_surgeon.data.config import DataConfig
from llm_surgeon.data.domains import DOMAINS, load_domain
from llm_surgeon.data.hub import hub_offline, hub_reachable
from llm_surgeon.errors import ConfigError

logger = logging.getLogger(__name__)

DATASETS = ("wikitext2", "wikitext2-bundled", "text", *DOMAINS)
#: WikiText-2 raw validation and test files shipped as package data.
BUNDLED_WIKITEXT = Path(__file__).parent / "wikitext2"
_DATASET_ALIASES = {"wikitext-2": "wikitext2", "wikitext2-raw": "wikitext2", "wikitext": "wikitext2",
                    "bundled": "wikitext2-bundled", "stdlib": "python-stdlib"}
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


def _hub_wikitext(split: str) -> tuple[str | None, str]:
    """WikiText-2 from the hub, else the hub's local cache, else the shipped copy."""
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - datasets is a dependency
        raise ConfigError("loading WikiText-2 from the hub needs the `datasets` package") from exc
    source = f"hub:{_HUB_WIKITEXT[0]}/{_HUB_WIKITEXT[1]}"
    reachable = hub_reachable()
    try:
        with hub_offline(not reachable):
            ds = datasets.load_dataset(*_HUB_WIKITEXT, split=split)
    except Exception as exc:
        if reachable:
            raise ConfigError(
                f"could not load WikiText-2 ({split}) from the hub: {exc}. "
                "Give --data-dir with local wiki.{train,valid,test}.raw files instead."
            ) from exc
        logger.warning("Hugging Face hub not reachable and WikiText-2 not in its cache: using the "
                       "copy shipped with llm-surgeon (validation and test splits)")
        text, path = _bundled_wikitext(split)
        return text, f"bundled:{path} (hub not reachable)"
    if not reachable:
        source = f"hub cache:{_HUB_WIKITEXT[0]}/{_HUB_WIKITEXT[1]} (hub not reachable)"
    return rows_to_raw(list(ds["text"])), source


def _bundled_wikitext(split: str) -> tuple[str | None, str]:
    path = _split_file(BUNDLED_WIKITEXT, split)
    return (None, str(BUNDLED_WIKITEXT)) if path is None else (_read(path), str(path))


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
    if dataset == "wikitext2-bundled":
        text, path = _bundled_wikitext(split)
        return text, f"bundled:{path}"
    if dataset in DOMAINS:
        return load_domain(dataset, split)
    if dataset == "wikitext2" and data.data_dir is None:
        return _hub_wikitext(split)
    return _local_text(data, split)


def check_source(data: DataConfig, what: str) -> None:
    """Refuse a local split file that is empty, without reading it (cheap, before any model).

    Raises:
        ConfigError: naming the empty file.
    """
    if data.data_dir is None:
        return
    root = Path(data.data_dir).expanduser()
    split = split_name(data.split)
    path = root if root.is_file() else None
    if root.is_dir():
        path = _split_file(root, split) or (_split_file(root, "validation") if split == "train" else None)
    if path is not None and path.stat().st_size == 0:
        raise ConfigError(f"{what} data file {str(path)!r} is empty")


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
        missing_in = source
        text, source = _load_split(data, "validation")
        if text is not None:
            info["split_used"] = "validation"
            info["note"] = "train split not available; using validation"
            logger.warning("%s: train split not found in %s; using validation", dataset, missing_in)
    if text is None:
        raise ConfigError(f"{dataset}: no {split} split in {source}")
    info["source"] = source
    info["characters"] = len(text)
    return text, info
