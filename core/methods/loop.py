"""The shot loop, written once: a method's shots on a schedule, each followed by hooks.

The runner, :func:`llm_surgeon.testing.check_prune` and any distributed or resumable
runner use :func:`run_shots`; what differs between them (LoRA, evaluation, logging,
checkpoints, contract checks) is a list of :data:`ShotHook` s run after every shot.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from llm_surgeon.errors import NumericalError
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

    After each shot the achieved size (nonzero prunable weights) and the real size
    (``info["real_size"]``, :meth:`PruningSession.real_size`) are recorded, then the hooks
    run in order. ``seconds["total"]`` is the time of the shot and its hooks so far: each
    hook sees the time up to it, the log keeps the time with every hook.

    Returns:
        The shot logs, in order.

    Raises:
        NumericalError: naming the shot (and, from the steps, the module).
    """
    logs = []
    planned = shot_targets(session)
    for shot, target in enumerate(planned, start=1):
        if shot < first_shot:
            continue
        start = time.perf_counter()
        try:
            shot_log = method.run_shot(session, shot, target)
        except NumericalError as exc:
            raise NumericalError(f"shot {shot} of {len(planned)}: {exc}") from exc
        shot_log.achieved = session.nonzero_size()
        shot_log.info["real_size"] = session.real_size()
        for hook in hooks:
            shot_log.seconds["total"] = time.perf_counter() - start
            hook(session, shot_log)
        shot_log.seconds["total"] = time.perf_counter() - start
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
