"""The shot loop, written once: a method's shots on a schedule, each followed by hooks.

The runner, :func:`llm_surgeon.testing.check_prune` and any distributed or resumable
runner use :func:`run_shots`; what differs between them (LoRA, evaluation, logging,
checkpoints, contract checks) is a list of :data:`ShotHook` s run after every shot.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from llm_surgeon.dist import current
from llm_surgeon.methods.base import Method, ShotLog
from llm_surgeon.methods.lora import finetune
from llm_surgeon.methods.session import PruningSession
from llm_surgeon.pruning.schedule import targets

#: Called after each shot with the session and the shot's log (which it may extend).
ShotHook = Callable[[PruningSession, ShotLog], None]


def shot_targets(session: PruningSession) -> list[float]:
    """Target size after each shot of the run's schedule (the last is the final size)."""
    cfg = session.config
    return targets(cfg.schedule, cfg.shots, cfg.target_size)


def run_shots(method: Method, session: PruningSession, *, hooks: Sequence[ShotHook] = (),
              first_shot: int = 1) -> list[ShotLog]:
    """Run shots ``first_shot ... shots`` of ``session``'s schedule with ``method``.

    After each shot the achieved size (nonzero prunable weights) is recorded, then the
    hooks run in order, then ``seconds["total"]`` (the shot and its hooks) is set. In a
    distributed job ``info["communication"]`` holds the MiB each rank contributed to
    collectives during the shot and its hooks, per kind (see :class:`~llm_surgeon.dist.Traffic`).

    Returns:
        The shot logs, in order.
    """
    logs = []
    comm = current()
    for shot, target in enumerate(shot_targets(session), start=1):
        if shot < first_shot:
            continue
        start, traffic = time.perf_counter(), comm.traffic.snapshot()
        shot_log = method.run_shot(session, shot, target)
        shot_log.achieved = session.nonzero_size()
        for hook in hooks:
            hook(session, shot_log)
        shot_log.seconds["total"] = time.perf_counter() - start
        if comm.distributed:
            shot_log.info["communication"] = comm.traffic.since(traffic)
        logs.append(shot_log)
    return logs


def lora_hook(session: PruningSession, shot_log: ShotLog) -> None:
    """First-order corrections after a shot (when the run's LoRA settings enable them)."""
    settings = session.config.lora
    if not settings.enabled:
        return
    result = finetune(session, settings, phase=f"shot{shot_log.shot}", steps=settings.steps_per_shot)
    shot_log.info["lora"] = result
    shot_log.seconds["lora"] = result.get("seconds", 0.0)
