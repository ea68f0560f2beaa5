"""Curvature-driven methods: estimate curvature, rank candidates globally, remove, update.

``surgeon``, ``kobd``, ``lobd`` and ``magnitude`` are all configurations of
:class:`ThresholdMethod`; they differ in the default curvature estimator, whether the
curvature is reduced to its diagonal, and whether remaining weights are updated.
"""

from __future__ import annotations

import time

from llm_surgeon.methods import steps
from llm_surgeon.methods.base import Method, ShotLog
from llm_surgeon.methods.session import PruningSession
from llm_surgeon.pruning.structures import UpdateMode
from llm_surgeon.util.resources import peak_rss_mb


class ThresholdMethod(Method):
    """Global-threshold pruning with any curvature and structure.

    Class attributes of subclasses choose the method: ``default_curvature``,
    ``diagonal`` (reduce the curvature to its diagonal, OBD-style) and
    ``default_update`` (overridable with ``--update``).
    """

    diagonal: bool = False
    default_update: UpdateMode = UpdateMode.FULL

    def run_shot(self, session: PruningSession, shot: int, target_size: float) -> ShotLog:
        """The steps of :mod:`llm_surgeon.methods.steps`, timed, with RSS high-water marks."""
        shot_log = ShotLog(shot=shot, target=target_size)
        curvatures = steps.estimate(session, shot_log, diagonal=self.diagonal)
        # High-water marks of the process's RSS after each phase: where the peak is reached.
        rss = shot_log.info["peak_rss_mb_after"] = {"passes": peak_rss_mb()}
        start = time.perf_counter()
        solvers = steps.shot_solvers(session, curvatures, shot_log)
        candidates = steps.score(session, session.scopes, solvers)
        selections = steps.select(session, candidates, target_size)
        del candidates
        shot_log.predicted_cost = steps.remove(session, session.scopes, solvers, selections)
        steps.free_dead(session, shot_log)
        shot_log.seconds["solver"] = time.perf_counter() - start
        rss["solver"] = peak_rss_mb()
        steps.log_escalations(solvers, shot_log)
        return shot_log
