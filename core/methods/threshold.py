"""Curvature-driven methods: estimate curvature, rank candidates globally, remove, update.

``surgeon``, ``kobd``, ``lobd`` and ``magnitude`` are all configurations of
:class:`ThresholdMethod`; they differ in the default curvature estimator, whether the
curvature is reduced to its diagonal, and whether remaining weights are updated.
"""

from __future__ import annotations

import time

from llm_surgeon.dist import current
from llm_surgeon.methods import steps
from llm_surgeon.methods.base import Method, ShotLog
from llm_surgeon.methods.session import PruningSession
from llm_surgeon.methods.sharding import owned_curvatures, scope_owners
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
        """The steps of :mod:`llm_surgeon.methods.steps`, timed, with RSS high-water marks.

        In a distributed job each rank solves the scopes it owns and keeps only their
        curvatures for the solve (see :mod:`llm_surgeon.methods.sharding`).
        """
        shot_log = ShotLog(shot=shot, target=target_size)
        scopes, comm = session.scopes, current()
        owners = scope_owners(comm, scopes)  # one rank per scope's solve (all 0 in one process)
        curvatures = owned_curvatures(comm, scopes, owners,
                                      steps.estimate(session, shot_log, diagonal=self.diagonal))
        # High-water marks of the process's RSS after each phase: where the peak is reached.
        rss = shot_log.info["peak_rss_mb_after"] = {"passes": peak_rss_mb()}
        start = time.perf_counter()
        solvers = steps.shot_solvers(session, curvatures, shot_log)
        del curvatures
        candidates = steps.score(session, scopes, solvers, owners)
        selections = steps.select(session, candidates, target_size)
        del candidates
        shot_log.predicted_cost = steps.remove(session, scopes, solvers, selections, owners)
        steps.free_dead(session, shot_log)  # on every rank, after the owners' broadcast
        shot_log.seconds["solver"] = time.perf_counter() - start
        rss["solver"] = peak_rss_mb()
        steps.log_escalations(solvers, shot_log)
        return shot_log
