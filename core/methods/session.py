"""The state of one pruning run, shared by the shot loop and the methods."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

import attrs
import torch
from torch import Tensor, nn

from llm_surgeon.curvature.estimator import CurvatureEstimator
from llm_surgeon.curvature.types import Curvature
from llm_surgeon.data.config import CalibrationConfig
from llm_surgeon.model.adapters import ArchitectureAdapter, PrunableModule
from llm_surgeon.model.couplings import Coupling
from llm_surgeon.model.state import ModuleState
from llm_surgeon.pruning.compact import real_parameters
from llm_surgeon.pruning.structures import Scope, Structure, UpdateMode
from llm_surgeon.util.torch_util import model_device

if TYPE_CHECKING:
    from llm_surgeon.methods.lora.settings import LoraSettings


class RunSettings(Protocol):
    """What methods and the shot loop read of a run's configuration.

    :class:`llm_surgeon.run.config.RunConfig` is one; tests may pass any object with
    these attributes.
    """

    target_size: float
    shots: int
    schedule: str
    structure: str
    seed: int
    damping_g: float | None
    damping_a: float | None
    calibration: CalibrationConfig
    lora: LoraSettings


@attrs.define(eq=False)
class PruningSession:
    """Everything a method needs during a run.

    Attributes:
        model: the causal LM being pruned (eval mode, on its device).
        adapter: its architecture adapter.
        states: one :class:`ModuleState` per prunable module, in model order.
        structure: the structure handler; ``structure_name`` its registered name.
        calibration: token ids ``(nsamples, seqlen)`` on the CPU.
        config: the run's settings (see :class:`RunSettings`).
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
    config: RunSettings
    estimator: CurvatureEstimator | None = None
    update: UpdateMode = UpdateMode.FULL
    previous_curvatures: dict[str, Curvature] | None = None
    progress: bool = True
    extras: dict[str, Any] = attrs.field(factory=dict)
    _scopes: list[Scope] | None = attrs.field(default=None, init=False, repr=False)
    _couplings: list[Coupling] | None = attrs.field(default=None, init=False, repr=False)

    @property
    def device(self) -> torch.device:
        """Device of the model's parameters."""
        return model_device(self.model)

    @property
    def scopes(self) -> list[Scope]:
        """The structure's scopes over the session's modules (computed once)."""
        if self._scopes is None:
            self._scopes = self.structure.scopes(self.states, self.adapter, self.couplings)
        return self._scopes

    @property
    def couplings(self) -> list[Coupling]:
        """The adapter's couplings (dimensions shared by modules) of the model (computed once)."""
        if self._couplings is None:
            self._couplings = self.adapter.couplings(self.model)
        return self._couplings

    def batches(self) -> list[Tensor]:
        """Calibration data split into batches of ``config.calibration.batch_size`` (CPU)."""
        return list(self.calibration.split(self.config.calibration.batch_size))

    def modules(self) -> list[PrunableModule]:
        """The :class:`~llm_surgeon.model.adapters.PrunableModule` of every state."""
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

    def real_parameters(self) -> int:
        """Prunable weights a compact export would store (:mod:`llm_surgeon.pruning.compact`)."""
        return real_parameters({s.pm.name: s.mask.cpu() for s in self.states}, self.couplings)

    def real_size(self) -> float:
        """Fraction of prunable weights a compact export would store: whole MLP neurons and
        heads dropped, scattered rows and columns only where index vectors pay off."""
        return self.real_parameters() / self.total_weights()

    def nonzero_size(self) -> float:
        """Fraction of prunable weights that are actually nonzero in the model."""
        nz = sum(int(s.pm.weight.count_nonzero()) for s in self.states)
        return nz / self.total_weights()

    def __iter__(self) -> Iterator[ModuleState]:
        return iter(self.states)
