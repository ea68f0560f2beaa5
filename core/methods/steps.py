"""The steps of one shot of a global-threshold method, as small functions with explicit state.

A shot is: estimate the curvature (:func:`estimate`), bind it to the shot's damping
(:func:`shot_solvers`), cost every candidate of every scope (:func:`score`), choose one
global threshold (:func:`select`), remove the selection with correlated updates
(:func:`remove`), and remove the structures that left dead (:func:`free_dead`, for
structures that propagate). :class:`~llm_surgeon.methods.threshold.ThresholdMethod` runs them in
order; a distributed or resumable runner can run, wrap or skip each one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, TypeVar

import torch
from torch import Tensor

from llm_surgeon.curvature.types import Curvature
from llm_surgeon.errors import NumericalError
from llm_surgeon.methods.base import ShotLog
from llm_surgeon.methods.session import PruningSession
from llm_surgeon.pruning.compact import real_parameters
from llm_surgeon.pruning.dead import Layout, propagate_layout, remove_dead
from llm_surgeon.pruning.structures import CandidateSet, Scope
from llm_surgeon.pruning.threshold import global_threshold, threshold_after
from llm_surgeon.solver.factor import Damping
from llm_surgeon.solver.live import Solvers
from llm_surgeon.util.faults import fault_point

log = logging.getLogger(__name__)
T = TypeVar("T")


def estimate(session: PruningSession, shot_log: ShotLog, *, diagonal: bool = False) -> dict[str, Curvature]:
    """Curvature of every module on the calibration data; timings go to ``shot_log``.

    Args:
        session: the run; its estimator's previous curvatures are kept for a warm start
            when the estimator wants them (``uses_previous``).
        shot_log: receives ``passes``/``algebra`` seconds, pass count and curvature size.
        diagonal: reduce every curvature to its diagonal (OBD-style methods).
    """
    if session.estimator is None:
        raise ValueError("this method needs a curvature estimator")
    result = session.estimator.estimate(
        session.model, session.modules(), session.batches(),
        previous=session.previous_curvatures, progress=session.progress,
    )
    shot_log.seconds["passes"] = result.seconds_passes
    shot_log.seconds["algebra"] = result.seconds_algebra
    shot_log.info["curvature_passes"] = result.passes
    shot_log.info["curvature_mb"] = result.nbytes / 2**20
    if result.info:
        shot_log.info["curvature"] = result.info
    if session.estimator.uses_previous:
        session.previous_curvatures = result.curvatures
    if diagonal:
        return {name: c.diagonal() for name, c in result.curvatures.items()}
    return result.curvatures


def resolved_damping(session: PruningSession) -> Damping:
    """The run's damping, each factor left ``None`` replaced by the structure's default."""
    g, a = session.config.damping_g, session.config.damping_a
    structure = session.structure
    return Damping(g=structure.default_damping_g if g is None else g,
                   a=structure.default_damping_a if a is None else a)


def shot_solvers(session: PruningSession, curvatures: dict[str, Curvature], shot_log: ShotLog) -> Solvers:
    """The shot's :class:`~llm_surgeon.solver.Solvers` at the run's damping (logged)."""
    damping = resolved_damping(session)
    shot_log.info["damping"] = {"g": damping.g, "a": damping.a}
    return Solvers(curvatures, damping)


def named(scope: Scope, fn: Callable[..., T], *args: Any) -> T:
    """Call ``fn(*args)``, naming the scope in numerical errors."""
    try:
        return fn(*args)
    except NumericalError as exc:
        if scope.name in str(exc):
            raise
        raise NumericalError(f"module {scope.name}: {exc}") from exc
    except (FloatingPointError, torch.linalg.LinAlgError) as exc:
        raise NumericalError(f"module {scope.name}: {exc}") from exc


def score(session: PruningSession, scopes: Sequence[Scope], solvers: Solvers) -> list[CandidateSet]:
    """Costs of every candidate of every scope."""
    return [named(scope, session.structure.candidates, scope, solvers) for scope in scopes]


def select(session: PruningSession, candidates: Sequence[CandidateSet], target_size: float
           ) -> list[dict[str, Tensor]]:
    """One global threshold: per scope, group name -> bool selection.

    When the structure propagates (:attr:`~llm_surgeon.pruning.Structure.propagates`),
    the weights that dead-structure propagation will free after the removal count
    toward the target; with ``size_measure == "real"`` the target is on the real
    (compact-export) size. Both search the threshold's own target
    (:func:`~llm_surgeon.pruning.threshold.threshold_after`) on the structure's
    predicted masks (:meth:`~llm_surgeon.pruning.Structure.masks_after`).
    """
    target_weights = round(target_size * session.total_weights())
    if not (propagates(session) or session.structure.size_measure == "real"):
        return global_threshold(candidates, target_weights)[0]
    # As close as the plain threshold gets: within one candidate.
    tolerance = max(session.structure.max_candidate_weights(scope) for scope in session.scopes)
    return threshold_after(candidates, target_weights, partial(size_after, session),
                           upper=session.remaining_weights(), tolerance=tolerance)[0]


def propagates(session: PruningSession) -> bool:
    """Whether the run removes dead structures after each shot."""
    return session.structure.propagates and bool(session.couplings)


def size_after(session: PruningSession, selections: Sequence[dict[str, Tensor]]) -> int:
    """The size, by the structure's measure, once ``selections`` and the dead structures go."""
    masks = {}
    for scope, selected in zip(session.scopes, selections, strict=True):
        for state, mask in zip(scope.states, session.structure.masks_after(scope, selected), strict=True):
            masks[state.pm.name] = mask
    layout = Layout.of(session.states, masks)
    if propagates(session):
        propagate_layout(layout, session.couplings)
    if session.structure.size_measure == "real":
        return real_parameters(layout.masks, session.couplings)
    return layout.alive()


def remove(session: PruningSession, scopes: Sequence[Scope], solvers: Solvers,
           selections: Sequence[dict[str, Tensor]]) -> float:
    """Remove every scope's selection; the predicted increase of the loss."""
    cost = 0.0
    for scope, selected in zip(scopes, selections, strict=True):
        fault_point("solve")
        cost += float(named(scope, session.structure.apply, scope, solvers, selected, session.update))
    return cost


def free_dead(session: PruningSession, shot_log: ShotLog) -> int:
    """Remove the weights the shot's removals made dead; their number goes to ``shot_log``."""
    if not propagates(session):
        return 0
    freed = remove_dead(session.states, session.couplings)
    shot_log.info["dead_freed"] = freed
    return freed


def log_escalations(solvers: Solvers, shot_log: ShotLog) -> None:
    """Record (and warn about) the modules whose damping had to be escalated."""
    if solvers.escalations:
        shot_log.info["damping_escalations"] = dict(solvers.escalations)
        log.warning("damping escalated in %d modules: %s", len(solvers.escalations), solvers.escalations)
