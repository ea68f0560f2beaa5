"""The work folder of an unfinished output: ``.NAME.partial`` beside ``NAME``.

A long run writes its output folder ``NAME`` only at the end, but needs a place from its
start for what must survive a crash (checkpoints). That place is the hidden sibling
``.NAME.partial``, with a stable name so that a later process finds it. While a process
works in it, it holds an exclusive lock on ``.NAME.partial/lock``, so two runs can
never write the same output. At the end the finished output is built in
``.NAME.partial/output``, marked complete, renamed to ``NAME`` (atomically, an older
``NAME`` is only removed once the new one is in place), and the work folder is deleted.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from pathlib import Path
from typing import IO

from llm_surgeon.errors import ConfigError
from llm_surgeon.util.io import apply_umask, check_output_folder, fsync_folder, replace_folder

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no locking
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

LOCK_FILE = "lock"
OUTPUT = "output"
#: Written once ``output/`` is complete; a crash after it only needs the rename.
SAVED_MARKER = "saved"


def partial_path(final: str | os.PathLike[str]) -> Path:
    """Where the work folder of output folder ``final`` lives."""
    final = Path(final).expanduser().absolute()
    return final.parent / f".{final.name}.partial"


class PartialFolder:
    """The locked work folder of output ``final``.

    Args:
        final: the output folder the work folder belongs to.
    """

    def __init__(self, final: str | os.PathLike[str]) -> None:
        self.final = Path(final).expanduser().absolute()
        self.path = partial_path(self.final)
        self._lock: IO[bytes] | None = None

    def exists(self) -> bool:
        """Whether a work folder (of this or an earlier process) is there."""
        return self.path.is_dir()

    def create(self) -> None:
        """Make and lock a new, empty work folder.

        Raises:
            ConfigError: a work folder already exists (the caller decides what to do first).
        """
        self.final.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.path.mkdir()
        except FileExistsError:
            raise ConfigError(f"work folder {str(self.path)!r} already exists") from None
        self.lock()

    def lock(self) -> None:
        """Take the exclusive lock of an existing work folder.

        Raises:
            ConfigError: another process holds it.
        """
        if self._lock is not None:
            return
        handle = open(self.path / LOCK_FILE, "ab")  # noqa: SIM115 - held until release()
        if fcntl is not None:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                raise ConfigError(
                    f"another llm-surgeon run is writing {str(self.final)!r} "
                    f"(its work folder {str(self.path)!r} is locked)"
                ) from None
        self._lock = handle

    def release(self) -> None:
        """Drop the lock (the folder stays)."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def remove(self) -> None:
        """Delete the work folder and everything in it."""
        self.release()
        shutil.rmtree(self.path, ignore_errors=True)

    def remove_if_unlocked(self) -> None:
        """Delete a stale work folder left by an earlier process; refused while one runs."""
        self.lock()
        self.remove()

    @property
    def output(self) -> Path:
        """Where the finished output is built before it is renamed to :attr:`final`."""
        return self.path / OUTPUT

    def start_output(self) -> Path:
        """A fresh, empty :attr:`output` folder (a half-written earlier one is removed)."""
        self.discard_output()
        self.output.mkdir()
        return self.output

    def discard_output(self) -> None:
        """Remove :attr:`output` and its completion mark (after a failed save)."""
        with contextlib.suppress(FileNotFoundError):
            (self.path / SAVED_MARKER).unlink()
        shutil.rmtree(self.output, ignore_errors=True)

    @property
    def saved(self) -> bool:
        """Whether :attr:`output` was completed by :meth:`commit` (only its rename is missing)."""
        return (self.path / SAVED_MARKER).exists() and self.output.is_dir()

    def commit(self, *, overwrite: bool = False) -> None:
        """Mark :attr:`output` complete, rename it to :attr:`final`, delete the work folder.

        Raises:
            ConfigError: :attr:`final` is not empty and ``overwrite`` is off (checked
                again here: it may have been written while the run went on).
        """
        if not self.saved:
            apply_umask(self.output)
            fsync_folder(self.output)
            (self.path / SAVED_MARKER).touch()
            fsync_folder(self.path)
        check_output_folder(self.final, overwrite=overwrite)
        replace_folder(self.output, self.final, overwrite=overwrite)
        self.remove()
        log.info("wrote %s", self.final)
