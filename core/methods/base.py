"""Pruning methods: what happens in one shot of the multi-shot loop.

A method receives the :class:`~llm_surgeon.methods.session.PruningSession` (model,
module states, structure, calibration data) and a target size for the shot, and
prunes the model to it. Curvature-driven methods (``surgeon``, ``kobd``, ``lobd``,
``magnitude``) share :class:`~llm_surgeon.methods.threshold.ThresholdMethod`;
layer-wise baselines (``sparsegpt``, ``wanda``) implement ``run_shot`` themselves.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import attrs

from llm_surgeon.methods.session import PruningSession
from llm_surgeon.pruning.structures import UpdateMode


@attrs.define
class ShotLog:
    """What one shot did.

    Attributes:
        shot: 1-based shot index.
        target: fraction of prunable weights the shot aimed to keep.
        achieved: fraction actually kept after the shot.
        seconds: phase -> seconds (``passes``, ``algebra``, ``solver``, ``eval``...).
        predicted_cost: sum of predicted quadratic loss increases, if known.
        info: method-specific extras (damping escalations, per-shot perplexity...).
    """

    shot: int
    target: float
    achieved: float = float("nan")
    seconds: dict[str, float] = attrs.field(factory=dict)
    predicted_cost: float | None = None
    info: dict[str, Any] = attrs.field(factory=dict)


class Method(ABC):
    """One pruning method."""

    #: Curvature estimator used when the user gives no ``--curvature`` (``None``: needs none).
    default_curvature: str | None = None
    #: Structure names this method supports (``None``: every registered structure).
    structures: tuple[str, ...] | None = None
    #: Whether removals update the remaining weights unless the run says (``--update``).
    default_update: UpdateMode = UpdateMode.NONE
    #: Shots ``llm-surgeon compare`` uses when ``--shots`` is not given (``None``: the run's).
    default_shots: int | None = None

    @abstractmethod
    def run_shot(self, session: PruningSession, shot: int, target_size: float) -> ShotLog:
        """Prune ``session.model`` so that ``target_size`` of the prunable weights remain."""
