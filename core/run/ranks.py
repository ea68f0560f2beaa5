"""What a pruning run does differently on the ranks of a torchrun job.

Only rank 0 prepares and writes the output folder (and its per-shot checkpoints); the
others learn whether it could. Each rank calibrates on its own share of the windows.
What a distributed run cannot do yet is refused before any weights load.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from llm_surgeon.data.mixture import uses_chat
from llm_surgeon.dist import Communicator, current
from llm_surgeon.errors import ConfigError, SurgeonError
from llm_surgeon.pruning.structures import Structure
from llm_surgeon.run.config import RunConfig
from llm_surgeon.run.output import RunOutput


def start_output(config: RunConfig, comm: Communicator, *, resume: bool, overwrite: bool,
                 keep: str) -> RunOutput | None:
    """Rank 0's :class:`RunOutput` of ``config.out`` (``None`` without ``out`` and on other ranks).

    Rank 0 checks and prepares the folder; a refusal there is raised on every rank.
    """
    if not config.out:
        return None
    output, error = None, None
    if comm.is_main:
        try:
            start = RunOutput.resume if resume else RunOutput.start
            output = start(config, overwrite=overwrite, keep=keep)
        except SurgeonError as exc:
            error = exc
    error = comm.broadcast_object(error)
    if error is not None:
        raise error
    return output


def check_distributed(config: RunConfig, comm: Communicator, calibration: Tensor | None = None,
                      structure: Structure | None = None) -> None:
    """What a distributed run cannot do, refused before any weights load.

    A structure whose threshold is searched on predicted masks (it propagates, or counts
    the real size) must predict them from a selection alone
    (:attr:`~llm_surgeon.pruning.Structure.masks_from_selection`): each rank measures
    the size of every scope, also those another rank scored.
    """
    if not comm.distributed:
        return
    searched = structure is not None and (structure.propagates or structure.size_measure == "real")
    if searched and not structure.masks_from_selection:
        raise ConfigError(f"structure {config.structure!r} is not supported in distributed runs yet "
                          "(its threshold search after dead-structure propagation needs every scope's "
                          "candidates on every rank); run it in one process")
    if config.lora.enabled:
        raise ConfigError("LoRA fine-tuning is not supported in distributed runs yet; "
                          "run it in one process")
    if uses_chat(config.calibration.data.dataset) and config.calibration.chat.file is None:
        raise ConfigError("self-generated chat calibration is not supported in distributed runs yet "
                          "(every rank would generate it); give the conversations with --chat-file, "
                          "or run in one process")
    if config.downstream.tasks:
        raise ConfigError("downstream tasks (--tasks) are not supported in distributed runs yet; "
                          "evaluate the saved model in one process (llm-surgeon eval --tasks)")
    nsamples = len(calibration) if calibration is not None else config.calibration.nsamples
    if nsamples < comm.size:
        raise ConfigError(f"{nsamples} calibration windows cannot be split over {comm.size} ranks; "
                          f"give at least --nsamples {comm.size}")


def my_share(calibration: Tensor, info: dict[str, Any]) -> Tensor:
    """This rank's calibration windows (all of them in a single process)."""
    comm = current()
    if comm.distributed:
        info["windows_per_rank"] = comm.gather_objects(len(comm.shard(calibration)))
    return comm.shard(calibration)
