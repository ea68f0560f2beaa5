"""Unstructured pruning: every weight of ``W`` is a removal candidate.

Costs are the single-weight OBS costs ``theta_ij^2 / (2 [F^-1]_(ij),(ij))`` on the live
sub-matrix (Optimal Brain Surgeon with ``K = {q}``, as in LLM Surgeon, van der Ouderaa et al., ICLR 2024);
the selected weights are removed together with correlated updates computed chunk by
chunk (:meth:`~llm_surgeon.solver.base.CurvatureSolver.remove_elements`).
"""

from __future__ import annotations

from typing import Any

import attrs
import torch
from torch import Tensor

from llm_surgeon.pruning import (
    DEFAULT_CHUNK_SIZE,
    SWEEPS,
    CandidateSet,
    ChunkSize,
    LiveView,
    ModuleState,
    Scope,
    Solvers,
    Structure,
    Sweep,
    UpdateMode,
)


def to_sweep(value: Any) -> Sweep:
    """Normalise a sweep option: ``None``/``"default"``, ``"sequential"`` or ``"gauss-seidel"``."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "default")):
        return None
    text = str(value).strip().lower()
    if text not in SWEEPS:
        raise ValueError(f"sweep must be one of {', '.join(SWEEPS)} (or default), got {value!r}")
    return text  # type: ignore[return-value]


def to_chunk_size(value: Any) -> ChunkSize:
    """Normalise a chunk-size option: ``None``/``"none"``/``"all"``, ``"row"`` or a positive int."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("none", "all"):
            return None
        if text == "row":
            return "row"
        if text.isdigit():
            value = int(text)
        else:
            raise ValueError(f"chunk_size must be a positive int, 'row' or 'none', got {value!r}")
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"chunk_size must be a positive int, 'row' or 'none', got {value!r}")
    return value


@attrs.frozen
class ElementConfig:
    """Options of the ``element`` structure.

    Attributes:
        chunk_size: removed weights solved jointly per chunk: an int (whole rows packed
            up to that many weights), ``"row"`` (one row per chunk) or ``None`` (all at
            once; small layers only).
        sweep: how chunks follow each other: ``sequential`` (default for ``G ⊗ A``:
            each chunk changes only its own and later rows, earlier rows are final) or
            ``gauss-seidel`` (every chunk updates every row; rows larger than a chunk
            are split; earlier removals are zeroed again at the end).
    """

    chunk_size: ChunkSize = attrs.field(default=DEFAULT_CHUNK_SIZE, converter=to_chunk_size)
    sweep: Sweep = attrs.field(default=None, converter=to_sweep)


def full_element_costs(state: ModuleState, solvers: Solvers) -> Tensor:
    """Single-weight removal costs of every weight of ``W``; dead weights cost 0.

    Returns:
        ``(d_out, d_w)`` float32 on the CPU (``d_w``: columns of ``W``, bias excluded).
        Only the costs' order matters to the threshold, and there is one per weight of
        the model, so they are kept in half the memory of float64.
    """
    view = LiveView.of(state.mask, state.pm.has_bias)
    theta = state.theta()
    costs = torch.zeros(view.d_out, view.d_in, dtype=torch.float64)
    if len(view.rows) and len(view.cols):
        solver = solvers.solver(state.pm.name, view)
        costs = view.scatter(costs, solver.element_costs(view.restrict(theta)).cpu())
    d_w = state.mask.shape[1]
    return (costs[:, :d_w] * state.mask.cpu()).to(torch.float32)


def element_candidates(state: ModuleState, costs: Tensor) -> CandidateSet:
    """One group ``elements`` of ``costs`` (any shape, dead weights first at cost 0).

    Selecting ``k`` candidates leaves ``numel - max(k, dead)`` weights: dead weights are
    the cheapest and are counted once.
    """
    numel = state.mask.numel()
    dead = numel - int(state.mask.sum())
    return CandidateSet(costs={"elements": costs.flatten()},
                        remaining=lambda counts: numel - max(int(counts["elements"]), dead))


def remove_weights(
    state: ModuleState,
    solvers: Solvers,
    removed: Tensor,
    update: UpdateMode,
    chunk_size: ChunkSize,
    sweep: Sweep = None,
) -> float:
    """Remove the weights ``removed`` (``(d_out, d_w)`` bool) of ``state``'s module.

    Weights removed in earlier shots are constraints of the update too, so they stay
    exactly zero at the optimum instead of being moved and zeroed again afterwards.
    The module's weights and mask are updated in place.

    Returns:
        The predicted increase of the quadratic loss model.
    """
    new = removed.cpu() & state.mask.cpu()
    if not bool(new.any()):
        solvers.discard(state.pm.name)
        return 0.0
    view = LiveView.of(state.mask, state.pm.has_bias)
    solver = solvers.solver(state.pm.name, view, pop=True)
    theta = state.theta()
    removed_full = torch.zeros(view.d_out, view.d_in, dtype=torch.bool)
    removed_full[:, : new.shape[1]] = new | ~state.mask.cpu()
    sub, cost = solver.remove_elements(
        view.restrict(theta),
        view.restrict(removed_full).to(theta.device),
        chunk_size=chunk_size,
        update=UpdateMode(update) is UpdateMode.FULL,
        sweep=sweep,
    )
    state.mask = state.mask & ~new.to(state.mask.device)
    state.set_theta(view.scatter(theta, sub))
    return float(cost)


class ElementStructure(Structure):
    """Every weight of ``W`` (bias excluded) is a candidate; one group ``elements``.

    Args:
        config: the structure's options.
    """

    #: As in the paper's released unstructured scripts: ``G`` by 0.1, ``A`` by 0.01.
    default_damping_g = 0.1
    default_damping_a = 0.01

    def __init__(self, config: ElementConfig | None = None):
        self.config = config or ElementConfig()

    @property
    def chunk_size(self) -> ChunkSize:
        """Chunk size of the correlated updates."""
        return self.config.chunk_size

    def candidates(self, scope: Scope, solvers: Solvers) -> CandidateSet:
        state = scope.state
        return element_candidates(state, full_element_costs(state, solvers))

    def apply(
        self,
        scope: Scope,
        solvers: Solvers,
        selected: dict[str, Tensor],
        update: UpdateMode,
    ) -> float:
        state = scope.state
        removed = selected["elements"].reshape(state.mask.shape).to(torch.bool)
        return remove_weights(state, solvers, removed, update, self.chunk_size, self.config.sweep)
