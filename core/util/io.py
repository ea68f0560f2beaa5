"""Writing outputs: atomic output folders and strict JSON.

An output folder only ever appears complete: everything is written into a hidden
temporary sibling folder which is renamed to the final name when the run succeeds.
A failed run removes its temporary folder and leaves any existing output untouched.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import Any

from llm_surgeon.errors import ConfigError

logger = logging.getLogger(__name__)

def check_output_folder(folder: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Check that ``folder`` may be written, before any expensive work starts.

    Args:
        folder: the output folder.
        overwrite: allow replacing a non-empty existing folder.

    Returns:
        ``folder`` as an absolute :class:`~pathlib.Path`.

    Raises:
        ConfigError: ``folder`` is a file, or a non-empty folder and ``overwrite`` is off.
    """
    path = Path(folder).expanduser().absolute()
    if path.exists():
        if not path.is_dir():
            raise ConfigError(f"output path {str(path)!r} exists and is not a folder")
        if any(path.iterdir()) and not overwrite:
            raise ConfigError(
                f"output folder {str(path)!r} exists and is not empty; "
                "choose another --out or pass --overwrite"
            )
    return path


@contextlib.contextmanager
def atomic_output(folder: str | os.PathLike[str], *, overwrite: bool = False) -> Iterator[Path]:
    """Write an output folder atomically.

    Yields a temporary folder next to ``folder`` (same file system, so the final
    rename is atomic). When the ``with`` block exits normally the temporary folder
    becomes ``folder``; when it raises, the temporary folder is deleted and
    ``folder`` is left as it was.

    Args:
        folder: the final output folder.
        overwrite: replace ``folder`` if it exists and is not empty (it is kept
            until the new output is in place).

    Yields:
        The temporary folder to write into.

    Raises:
        ConfigError: ``folder`` is not empty and ``overwrite`` is off.
    """
    final = check_output_folder(folder, overwrite=overwrite)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-", dir=final.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if final.exists():
        # Re-check: something may have been written there while we ran.
        check_output_folder(final, overwrite=overwrite)
        old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
        os.replace(final, old / final.name)
    try:
        os.replace(tmp, final)
    except BaseException:
        if old is not None:
            os.replace(old / final.name, final)
            shutil.rmtree(old, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    logger.info("wrote %s", final)


def _jsonable(obj: Any) -> Any:
    """Fallback converter for :func:`json.dump` (paths, enums, tensors, attrs classes)."""
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if hasattr(obj, "tolist"):  # torch tensors and numpy arrays / scalars
        return obj.tolist()
    import attrs

    if attrs.has(type(obj)):
        return attrs.asdict(obj)
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")


def _finite(obj: Any) -> Any:
    """Replace non-finite floats by ``None`` so the output is strict JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def to_json_text(obj: Any) -> str:
    """``obj`` as indented, strict JSON text (NaN and infinities become ``null``)."""
    plain = json.loads(json.dumps(obj, default=_jsonable))
    return json.dumps(_finite(plain), indent=2, sort_keys=False, allow_nan=False) + "\n"


def _write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and a rename (folder created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as JSON to ``path`` (via a temporary file and a rename).

    Args:
        path: the file to write; its folder is created if needed.
        obj: JSON-like data; enums, paths, tensors and attrs instances are converted.
    """
    _write_text(Path(path), to_json_text(obj))


def write_jsonl(path: str | os.PathLike[str], rows: list[Any]) -> None:
    """Write one compact JSON object per line to ``path`` (atomically, like :func:`write_json`)."""
    lines = [json.dumps(_finite(json.loads(json.dumps(r, default=_jsonable))), ensure_ascii=False)
             for r in rows]
    _write_text(Path(path), "".join(line + "\n" for line in lines))
