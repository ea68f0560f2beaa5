"""The state of one pruning run, shared by the shot loop and the methods."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import attrs
import torch
from torch import Tensor, nn

from llm_surgeon.adapters import ArchitectureAdapter
from llm_surgeon.config import RunConfig
from llm_surgeon.curvature import Curvature, CurvatureEstimator
from llm_surgeon.methods import Method
from llm_surgeon.structures import ModuleState, Structure, UpdateMode


@attrs.define(eq=False)
class PruningSession:
    """Everything a method needs during a run.

    Attributes:
        model: the causal LM being pruned (eval mode, on ``config.device``).
        adapter: its architecture adapter.
        states: one :class:`ModuleState` per prunable module, in model order.
        structure: the structure handler; ``structure_name`` its registered name.
        calibration: token ids ``(nsamples, seqlen)`` on the CPU.
        config: the resolved run configuration.
        method: the pruning method running the shots.
        estimator: the curvature estimator (``None`` if the method needs none).
        update: whether removals update the remaining weights.
        previous_curvatures: last shot's curvatures by module name (warm starts).
        progress: show progress bars.
        extras: free-form state a method keeps between shots.
    """

    model: nn.Module
    adapter: ArchitectureAdapter
    states: list[ModuleState]
    structure: Structure
    structure_name: str
    calibration: Tensor
    config: RunConfig
    method: Method | None = None
    estimator: CurvatureEstimator | None = None
    update: UpdateMode = UpdateMode.FULL
    previous_curvatures: dict[str, Curvature] | None = None
    progress: bool = True
    extras: dict[str, Any] = attrs.field(factory=dict)

    @property
    def device(self) -> torch.device:
        """Device of the model's parameters."""
        return next(self.model.parameters()).device

    def batches(self) -> list[Tensor]:
        """Calibration data split into batches of ``config.calibration.batch_size`` (CPU)."""
        return list(self.calibration.split(self.config.calibration.batch_size))

    def modules(self) -> list:
        """The :class:`~llm_surgeon.adapters.PrunableModule` of every state."""
        return [s.pm for s in self.states]

    def total_weights(self) -> int:
        """Number of prunable weights (bias excluded)."""
        return sum(s.pm.numel for s in self.states)

    def remaining_weights(self) -> int:
        """Number of prunable weights still alive by the masks."""
        return sum(s.remaining for s in self.states)

    def size(self) -> float:
        """Fraction of prunable weights still alive by the masks."""
        return self.remaining_weights() / self.total_weights()

    def nonzero_size(self) -> float:
        """Fraction of prunable weights that are actually nonzero in the model."""
        nz = sum(int(s.pm.module.weight.count_nonzero()) for s in self.states)
        return nz / self.total_weights()

    def __iter__(self) -> Iterator[ModuleState]:
        return iter(self.states)
