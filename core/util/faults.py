"""Fault injection at named points of a run. For testing only.

The reliability tests kill, interrupt or break a real run at a chosen point without
sleeping and guessing. Nothing happens unless ``LLM_SURGEON_FAULT`` is set::

    LLM_SURGEON_FAULT="calibration-batch:6=kill"   # SIGKILL itself at the 6th calibration batch
    LLM_SURGEON_FAULT="solve:20=pause"             # wait at the 20th scope solved, to be killed
    LLM_SURGEON_FAULT="final-save=enospc"          # a full disk while the output is saved

The value is a comma-separated list of ``POINT[:N]=ACTION``: ``ACTION`` happens the
``N``-th time (default 1) the process reaches ``POINT``.

Points, in the order a run reaches them: ``calibration-batch`` (every batch of every
calibration pass), ``solve`` (every scope whose selection is removed), ``checkpoint-write``
(a checkpoint's files are written, before they are renamed into place), ``final-save``
(the pruned model is saved, before the report).

Actions: ``kill`` (SIGKILL to itself), ``interrupt`` (SIGINT to itself), ``pause`` (create
``POINT-N.paused`` in ``$LLM_SURGEON_FAULT_DIR``, holding the process id, and sleep until
a signal arrives), ``enospc`` (raise ``OSError(ENOSPC)``), ``raise`` (raise ``RuntimeError``).
"""

from __future__ import annotations

import errno
import os
import signal
import time
from collections import Counter
from pathlib import Path

FAULT_ENV = "LLM_SURGEON_FAULT"
FAULT_DIR_ENV = "LLM_SURGEON_FAULT_DIR"
POINTS = ("calibration-batch", "solve", "checkpoint-write", "final-save")
ACTIONS = ("kill", "interrupt", "pause", "enospc", "raise")

_parsed: tuple[str, dict[tuple[str, int], str]] | None = None
_counts: Counter[str] = Counter()


def parse_faults(text: str) -> dict[tuple[str, int], str]:
    """``"solve:3=kill,final-save=pause"`` -> ``{("solve", 3): "kill", ("final-save", 1): "pause"}``.

    Raises:
        ValueError: an unknown point or action, or a malformed entry.
    """
    faults = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        where, sep, action = item.partition("=")
        point, _, count = where.partition(":")
        if not sep or point not in POINTS or action not in ACTIONS or not (count or "1").isdigit():
            raise ValueError(f"{FAULT_ENV}: bad entry {item!r} (points: {', '.join(POINTS)}; "
                             f"actions: {', '.join(ACTIONS)})")
        faults[(point, int(count or 1))] = action
    return faults


def _faults(text: str) -> dict[tuple[str, int], str]:
    global _parsed
    if _parsed is None or _parsed[0] != text:
        _parsed = (text, parse_faults(text))
        _counts.clear()
    return _parsed[1]


def fault_point(point: str) -> None:
    """Mark that the run reached ``point``; act if ``$LLM_SURGEON_FAULT`` asks to here."""
    text = os.environ.get(FAULT_ENV)
    if not text:
        return
    faults = _faults(text)
    _counts[point] += 1
    action = faults.get((point, _counts[point]))
    if action is not None:
        _act(action, f"{point}-{_counts[point]}")


def _act(action: str, where: str) -> None:
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if action == "enospc":
        raise OSError(errno.ENOSPC, f"No space left on device (injected at {where})")
    if action == "raise":
        raise RuntimeError(f"fault injected at {where}")
    if action == "interrupt":
        os.kill(os.getpid(), signal.SIGINT)
    else:  # pause
        folder = Path(os.environ.get(FAULT_DIR_ENV) or ".")
        marker = folder / f"{where}.paused"
        marker.with_suffix(".tmp").write_text(str(os.getpid()))
        marker.with_suffix(".tmp").replace(marker)
    while True:  # until the signal's handler raises (SIGINT) or the process dies
        time.sleep(0.01)
