"""Data-parallel pruning jobs on ``torch.distributed``, launched with ``torchrun``.

Calibration windows are split across ranks; sums over tokens are all-reduced; work
that is a function of the summed statistics (factorisations, candidate costs,
removals) runs once on an owner rank and its results are broadcast. One process is
the special case in which every collective is the identity (:func:`current` outside
a job). See README, "Distributed runs".
"""

from llm_surgeon.dist.assign import assign_owners
from llm_surgeon.dist.comm import Communicator, Traffic, activate, current
from llm_surgeon.dist.failure import describe, rank_label, record_failure
from llm_surgeon.dist.launch import (
    DistributedError,
    distributed,
    init_from_env,
    rank_from_env,
    timeout_seconds,
    world_size_from_env,
)

__all__ = [
    "Communicator",
    "DistributedError",
    "Traffic",
    "activate",
    "assign_owners",
    "current",
    "describe",
    "distributed",
    "init_from_env",
    "rank_from_env",
    "rank_label",
    "record_failure",
    "timeout_seconds",
    "world_size_from_env",
]
