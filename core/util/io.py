"""Writing outputs: atomic output folders and strict JSON.

An output folder only ever appears complete: everything is written into a hidden
temporary sibling folder which is renamed to the final name when the run succeeds.
A failed run removes its temporary folder and leaves any existing output untouched.
Files and folders are created with the permissions the user's umask gives (not the
private ``0600``/``0700`` of :mod:`tempfile`).
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


def umask() -> int:
    """The process's umask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def temporary_folder(parent: Path, prefix: str) -> Path:
    """A new uniquely named folder in ``parent``, with the umask's permissions."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    path.chmod(0o777 & ~umask())
    return path


def apply_umask(path: str | os.PathLike[str]) -> None:
    """Give ``path`` (and, for a folder, everything in it) the permissions of the umask.

    Some writers (:mod:`tempfile`, safetensors) create files private to the user
    (``0600``); outputs are meant to be shared like any file the user creates.
    """
    mask = umask()
    path = Path(path)
    for entry in [path, *path.rglob("*")] if path.is_dir() else [path]:
        entry.chmod((0o777 if entry.is_dir() else 0o666) & ~mask)


def fsync_folder(path: str | os.PathLike[str]) -> None:
    """Flush a folder's entries (renames into it) to disk, where the OS supports it."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


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
    tmp = temporary_folder(final.parent, f".{final.name}.partial-")
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        apply_umask(tmp)
        replace_folder(tmp, final, overwrite=overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("wrote %s", final)


def replace_folder(source: Path, final: Path, *, overwrite: bool = False) -> None:
    """Rename the finished folder ``source`` to ``final`` (same file system).

    An existing ``final`` is checked again (it may have been written meanwhile), moved
    aside, and deleted only once ``source`` is in its place; if the rename fails it is
    put back.

    Raises:
        ConfigError: ``final`` is not empty and ``overwrite`` is off.
    """
    old = None
    if final.exists():
        check_output_folder(final, overwrite=overwrite)
        old = temporary_folder(final.parent, f".{final.name}.old-")
        os.replace(final, old / final.name)
    try:
        os.replace(source, final)
    except BaseException:
        if old is not None:
            os.replace(old / final.name, final)
            shutil.rmtree(old, ignore_errors=True)
        raise
    fsync_folder(final.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


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


def to_plain(obj: Any) -> Any:
    """``obj`` as plain JSON data (dicts, lists, numbers, strings), NaN and infinities kept."""
    return json.loads(json.dumps(obj, default=_jsonable))


def to_json_text(obj: Any) -> str:
    """``obj`` as indented, strict JSON text (NaN and infinities become ``null``)."""
    plain = json.loads(json.dumps(obj, default=_jsonable))
    return json.dumps(_finite(plain), indent=2, sort_keys=False, allow_nan=False) + "\n"


def _write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and a rename (folder created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~umask())
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
