"""Joining a job launched by ``torchrun``: its environment variables, backend and devices.

``torchrun --nproc-per-node N -m llm_surgeon prune ...`` starts ``N`` processes with
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` set.
:func:`distributed` joins that job (gloo for CPU tensors, NCCL for CUDA tensors, one GPU
per rank) and makes its :class:`~llm_surgeon.dist.comm.Communicator` the current one;
without those variables it is a single process and nothing is initialised.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import logging
import os
from collections.abc import Iterator

from llm_surgeon.dist.comm import Communicator, activate, current
from llm_surgeon.errors import ConfigError, SurgeonError

log = logging.getLogger(__name__)

#: Variables torchrun sets for every worker.
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
#: Seconds a collective (and joining the job) may wait for the other ranks.
DEFAULT_TIMEOUT = 600.0


class DistributedError(SurgeonError):
    """The job's processes could not be joined or lost contact with each other."""


def world_size_from_env() -> int:
    """``WORLD_SIZE`` as set by torchrun (1 when it is not set)."""
    value = os.environ.get("WORLD_SIZE", "1")
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"WORLD_SIZE must be an integer, got {value!r}") from None


def rank_from_env() -> int:
    """``RANK`` as set by torchrun (0 when it is not set)."""
    return int(os.environ.get("RANK", "0") or 0)


def timeout_seconds() -> float:
    """``$LLM_SURGEON_DIST_TIMEOUT`` seconds, else :data:`DEFAULT_TIMEOUT`."""
    value = os.environ.get("LLM_SURGEON_DIST_TIMEOUT")
    if not value:
        return DEFAULT_TIMEOUT
    try:
        seconds = float(value)
    except ValueError:
        raise ConfigError(f"LLM_SURGEON_DIST_TIMEOUT must be a number of seconds, got {value!r}") from None
    if seconds <= 0:
        raise ConfigError(f"LLM_SURGEON_DIST_TIMEOUT must be positive, got {value!r}")
    return seconds


def _backend(device: str) -> str:
    """gloo for a CPU job; for a CUDA job NCCL for CUDA tensors and gloo for CPU ones."""
    import torch

    dev = torch.device(device)
    if dev.type != "cuda":
        return "gloo"
    if dev.index is not None:
        raise ConfigError(
            f"device {device!r} names one GPU, but every rank needs its own: give --device cuda "
            "and torchrun puts rank r on GPU LOCAL_RANK"
        )
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not torch.cuda.is_available() or local_rank >= torch.cuda.device_count():
        raise ConfigError(
            f"rank with LOCAL_RANK={local_rank} needs a GPU of its own, but "
            f"{torch.cuda.device_count() if torch.cuda.is_available() else 0} are visible"
        )
    torch.cuda.set_device(local_rank)
    return "cpu:gloo,cuda:nccl"


def init_from_env(device: str = "cpu", timeout: float | None = None) -> Communicator:
    """Join the torchrun job described by the environment.

    Reuses the default process group when one is already initialised (a second run in
    the same job, or a caller that set it up itself).

    Args:
        device: the run's device; ``cuda`` selects NCCL and GPU ``LOCAL_RANK``.
        timeout: seconds for joining and for every collective (default
            :func:`timeout_seconds`).

    Raises:
        ConfigError: a torchrun variable is missing or the devices do not fit.
        DistributedError: the job could not be joined in time.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return Communicator(dist.get_rank(), dist.get_world_size(), str(dist.get_backend()))
    missing = [v for v in TORCHRUN_VARIABLES if not os.environ.get(v)]
    if missing:
        raise ConfigError(
            f"WORLD_SIZE={os.environ.get('WORLD_SIZE')} but {', '.join(missing)} not set: "
            "launch distributed runs with torchrun (torchrun --nproc-per-node N -m llm_surgeon ...)"
        )
    backend = _backend(device)
    seconds = timeout if timeout is not None else timeout_seconds()
    rank, size = rank_from_env(), world_size_from_env()
    try:
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=seconds))
    except (RuntimeError, ValueError, TimeoutError) as exc:
        where = f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}"
        raise DistributedError(f"rank {rank} of {size} could not join the job at {where}: {exc}") from exc
    atexit.register(_destroy)
    log.debug("joined the job as rank %d of %d (%s, timeout %.0f s)", rank, size, backend, seconds)
    return Communicator(rank, size, backend)


def _destroy() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        with contextlib.suppress(Exception):
            dist.destroy_process_group()


@contextlib.contextmanager
def distributed(device: str = "cpu", timeout: float | None = None) -> Iterator[Communicator]:
    """The job's communicator, current inside the block.

    Under torchrun (``WORLD_SIZE > 1``) the process group is joined (once per process);
    otherwise the block runs with the current (single-process) communicator.
    """
    if world_size_from_env() <= 1:
        yield current()
        return
    with activate(init_from_env(device, timeout)) as comm:
        yield comm
