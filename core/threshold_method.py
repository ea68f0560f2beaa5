"""Curvature-driven methods: estimate curvature, rank candidates globally, remove, update.

``surgeon``, ``kobd``, ``lobd`` and ``magnitude`` are all configurations of
:class:`ThresholdMethod`; they differ in the default curvature estimator, whether the
curvature is reduced to its diagonal, and whether remaining weights are updated.
"""

from __future__ import annotations

import logging
import time

import torch

from llm_surgeon.curvature import Curvature, Damping, KroneckerCurvature
from llm_surgeon.errors import NumericalError
from llm_surgeon.methods import Method, ShotLog
from llm_surgeon.report import peak_rss_mb
from llm_surgeon.session import PruningSession
from llm_surgeon.structures import UpdateMode
from llm_surgeon.threshold import global_threshold

log = logging.getLogger(__name__)


class ThresholdMethod(Method):
    """Global-threshold pruning with any curvature and structure.

    Class attributes of subclasses choose the method: ``default_curvature``,
    ``diagonal`` (reduce the curvature to its diagonal, OBD-style) and
    ``default_update`` (overridable with ``--update``).
    """

    diagonal: bool = False
    default_update: UpdateMode = UpdateMode.FULL

    def _curvatures(self, session: PruningSession, shot_log: ShotLog) -> dict[str, Curvature]:
        if session.estimator is None:
            raise ValueError(f"method {type(self).__name__} needs a curvature estimator")
        result = session.estimator.estimate(
            session.model,
            session.modules(),
            session.batches(),
            previous=session.previous_curvatures,
            progress=session.progress,
        )
        shot_log.seconds["passes"] = result.seconds_passes
        shot_log.seconds["algebra"] = result.seconds_algebra
        shot_log.info["curvature_passes"] = result.passes
        shot_log.info["curvature_mb"] = result.nbytes / 2**20
        if result.info:
            shot_log.info["curvature"] = result.info
        damping = resolved_damping(session)
        shot_log.info["damping"] = {"g": damping.g, "a": damping.a}
        for curvature in result.curvatures.values():
            if isinstance(curvature, KroneckerCurvature):
                curvature.damping = damping
        if getattr(session.estimator, "uses_previous", False):
            session.previous_curvatures = result.curvatures
        if self.diagonal:
            return {name: c.diagonal() for name, c in result.curvatures.items()}
        return result.curvatures

    def run_shot(self, session: PruningSession, shot: int, target_size: float) -> ShotLog:
        shot_log = ShotLog(shot=shot, target=target_size)
        curvatures = self._curvatures(session, shot_log)
        # High-water marks of the process's RSS after each phase: where the peak is reached.
        rss = shot_log.info["peak_rss_mb_after"] = {"passes": peak_rss_mb()}

        start = time.perf_counter()
        candidates = [
            _named(state.pm.name, session.structure.candidates, state, curvatures[state.pm.name])
            for state in session.states
        ]
        target_weights = round(target_size * session.total_weights())
        selections, _ = global_threshold(candidates, target_weights)

        cost = 0.0
        escalations = {}
        for state, selected in zip(session.states, selections, strict=True):
            curvature = curvatures[state.pm.name]
            cost += float(_named(state.pm.name, session.structure.apply, state, curvature, selected,
                                 session.update))
            n_escalations = getattr(curvature, "info", {}).get("damping_escalations")
            if n_escalations:
                escalations[state.pm.name] = n_escalations
        shot_log.seconds["solver"] = time.perf_counter() - start
        rss["solver"] = peak_rss_mb()
        shot_log.predicted_cost = cost
        if escalations:
            shot_log.info["damping_escalations"] = escalations
            log.warning("damping escalated in %d modules: %s", len(escalations), escalations)
        return shot_log


def resolved_damping(session: PruningSession) -> Damping:
    """The run's damping, each factor left ``None`` replaced by the structure's default."""
    g, a = session.config.damping_g, session.config.damping_a
    structure = session.structure
    return Damping(g=structure.default_damping_g if g is None else g,
                   a=structure.default_damping_a if a is None else a)


def _named(module_name: str, fn, *args):
    """Call ``fn(*args)``, naming the module in numerical errors."""
    try:
        return fn(*args)
    except NumericalError as exc:
        if module_name in str(exc):
            raise
        raise NumericalError(f"module {module_name}: {exc}") from exc
    except (FloatingPointError, torch.linalg.LinAlgError) as exc:
        raise NumericalError(f"module {module_name}: {exc}") from exc
