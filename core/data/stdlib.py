"""The ``python-stdlib`` domain: the running interpreter's standard-library source code.

Root: ``sysconfig.get_paths()["stdlib"]``. Every ``*.py`` below it is used except test
suites and demos (directories ``test``, ``tests``, ``idle_test``, ``turtledemo``),
installed packages (``site-packages``, ``dist-packages``), ``__pycache__`` and
``config-*`` folders, files named ``test_*.py``, the generated ``pydoc_data/topics.py``
and files that are not UTF-8. A part is its files in sorted path order, each headed by
``# file: KEY`` and separated by a blank line. The text changes with the interpreter's
patch release; the source description names the version and the text's digest.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from pathlib import Path

from llm_surgeon.data.domains import digest, part_of
from llm_surgeon.errors import ConfigError

SKIP_DIRS = frozenset({"site-packages", "dist-packages", "__pycache__", "test", "tests",
                       "idle_test", "turtledemo"})
SKIP_FILES = frozenset({"pydoc_data/topics.py"})


def stdlib_root() -> Path:
    """The interpreter's standard-library folder."""
    return Path(sysconfig.get_paths()["stdlib"]).resolve()


def _utf8(path: Path) -> str | None:
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        return None


def source_files(root: Path | None = None) -> list[tuple[str, Path]]:
    """``(key, path)`` of every used ``.py`` file below ``root``, sorted by key."""
    root = (root or stdlib_root()).resolve()
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith("config-"))
        for name in filenames:
            if not name.endswith(".py") or name.startswith("test_"):
                continue
            path = Path(dirpath) / name
            key = path.relative_to(root).as_posix()
            if key not in SKIP_FILES:
                files.append((key, path))
    return sorted(files)


def part_text(part: str, root: Path | None = None) -> tuple[str, int]:
    """``(text, number of files)`` of the ``calib`` or ``eval`` part."""
    texts = []
    for key, path in source_files(root):
        if part_of(key) == part:
            text = _utf8(path)
            if text is not None:
                texts.append(f"# file: {key}\n{text}")
    return "\n\n".join(texts), len(texts)


def load_part(part: str, root: Path | None = None) -> tuple[str, str]:
    """``(text, source)`` of a part; the source names the root, Python version and digest."""
    root = root or stdlib_root()
    text, n_files = part_text(part, root)
    if not n_files:
        raise ConfigError(f"python-stdlib: no .py files for the {part} part under {str(root)!r}")
    version = ".".join(map(str, sys.version_info[:3]))
    return text, f"{root} (Python {version}, {part} part: {n_files} files, sha256 {digest(text)})"
