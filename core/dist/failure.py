"""How a failing rank is reported: its rank in the message, and torchrun's error file.

When one rank raises, torchrun's agent ends the other ranks (``--monitor-interval``)
and prints a summary naming the first failure; :func:`record_failure` puts the
exception into that summary (the ``TORCHELASTIC_ERROR_FILE`` torchrun reads). A rank
that was waiting in a collective when another one died sees a transport error instead;
:func:`describe` says so, so that the first failure is the one to read.
"""

from __future__ import annotations

import contextlib
import os

from llm_surgeon.dist.launch import rank_from_env, world_size_from_env

#: Fragments of transport errors raised in a rank whose peer went away.
_PEER_LOST = ("Connection closed by peer", "Connection reset by peer", "Broken pipe",
              "remote process exited", "NCCL communicator was aborted", "Timed out waiting")


def rank_label() -> str:
    """``"rank R/N "`` in a distributed job (from torchrun's variables), else ``""``."""
    size = world_size_from_env()
    return f"rank {rank_from_env()}/{size} " if size > 1 else ""


def describe(exc: BaseException) -> str:
    """One line for ``exc``; a lost peer is named as such."""
    text = f"{type(exc).__name__}: {exc}"
    if any(fragment in str(exc) for fragment in _PEER_LOST):
        return "lost contact with another rank (it probably failed first; see its message): " + text
    return text


def record_failure(exc: BaseException) -> None:
    """Write ``exc`` to torchrun's error file for this rank, when torchrun asked for one."""
    if not os.environ.get("TORCHELASTIC_ERROR_FILE"):
        return
    from torch.distributed.elastic.multiprocessing.errors import ErrorHandler

    with contextlib.suppress(Exception):  # reporting must never hide the original error
        ErrorHandler().record_exception(exc)
