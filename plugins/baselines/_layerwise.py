"""Shared machinery of the layer-wise baselines (SparseGPT, Wanda).

* :class:`LayerwiseMethod` runs one shot: it propagates the calibration data layer by
  layer (:func:`llm_surgeon.pruning.layerwise.propagate`) and lets the subclass prune every
  module from statistics of its inputs, keeping ``session.states[i].mask`` in sync.
* :func:`select_lowest` and :func:`nm_protected` choose which weights to remove from a
  score matrix, respecting weights that are already removed (they are always chosen
  first and never come back) and the N:M pattern.

Sparsity is uniform: every module keeps ``target_size`` of its weights, as in both
papers. N:M follows the ``n:m`` structure (and SparseGPT's ``prunen:prunem``): *N weights
removed from every group of M consecutive inputs of a row* (2:4 removes 2 of 4; the
final size is ``1 - N/M``). With several shots, a shot whose target is above ``1 - N/M``
removes up to ``N`` weights per group (the lowest-scoring ones), so the final shot
reaches the exact pattern.
"""

from __future__ import annotations

import logging
import time
from abc import abstractmethod
from typing import Any

import torch
from torch import Tensor

from llm_surgeon.errors import ConfigError
from llm_surgeon.methods import Method, PruningSession, ShotLog
from llm_surgeon.model import ModuleState, PrunableModule
from llm_surgeon.pruning import InputStatistic, UpdateMode, parse_nm, propagate

log = logging.getLogger(__name__)


def structure_nm(session: PruningSession) -> tuple[int, int] | None:
    """``(n, m)`` if the session prunes N:M (n removed of every m), ``None`` for elements.

    Raises:
        ConfigError: for structures the layer-wise methods do not support.
    """
    n, m = getattr(session.structure, "n", None), getattr(session.structure, "m", None)
    if n is not None and m is not None:
        return int(n), int(m)
    nm = parse_nm(session.config.structure)
    if nm is not None:
        return nm
    if session.structure_name in ("element", "unstructured"):
        return None
    raise ConfigError(
        f"structure {session.structure_name!r} is not supported by layer-wise methods "
        "(supported: element, N:M such as 2:4)"
    )


def select_lowest(
    scores: Tensor,
    count: int,
    *,
    forced: Tensor | None = None,
    protected: Tensor | None = None,
    per_row: bool = True,
) -> Tensor:
    """Choose the ``count`` lowest scores (per row, or over the whole matrix).

    Args:
        scores: ``(rows, cols)`` removal scores (lower: removed first).
        count: how many to remove per row (``per_row``) or in total.
        forced: ``(rows, cols)`` bool, always removed and counted first (already dead).
        protected: ``(rows, cols)`` bool, never removed (unless also forced).

    Returns:
        ``(rows, cols)`` bool, ``True`` where removed.
    """
    s = scores.detach().clone()
    if protected is not None:
        s[protected] = float("inf")
    if forced is not None:
        s[forced] = float("-inf")
    flat = s if per_row else s.reshape(1, -1)
    k = max(0, min(int(count), flat.shape[1]))
    removed = torch.zeros_like(flat, dtype=torch.bool)
    if k > 0:
        idx = torch.topk(flat, k, dim=1, largest=False).indices
        removed.scatter_(1, idx, True)
    removed = removed.reshape(scores.shape)
    if protected is not None:
        removed &= ~protected
    if forced is not None:
        removed |= forced
    return removed


def nm_kept(nm: tuple[int, int]) -> float:
    """Fraction of weights an N:M pattern keeps, ``1 - n/m``."""
    return 1.0 - nm[0] / nm[1]


def nm_protected(scores: Tensor, kept: int, m: int, forced: Tensor | None = None) -> Tensor:
    """Weights a group pattern keeps: the ``kept`` highest scores of each group of ``m`` columns.

    Already-removed (``forced``) weights are never kept. Trailing columns that do not
    fill a group (``cols % m``) are all kept.

    Args:
        scores: ``(rows, cols)``.
        kept, m: keep ``kept`` of every ``m`` (``m - n`` for an N:M structure).
        forced: ``(rows, cols)`` bool, already removed.

    Returns:
        ``(rows, cols)`` bool, ``True`` where the pattern keeps the weight.
    """
    rows, cols = scores.shape
    full = cols - cols % m
    s = scores.detach().clone()
    if forced is not None:
        s[forced] = float("-inf")
    keep = torch.ones(rows, cols, dtype=torch.bool, device=scores.device)
    if full:
        groups = s[:, :full].reshape(rows, full // m, m)
        idx = torch.topk(groups, kept, dim=2, largest=True).indices
        g_keep = torch.zeros_like(groups, dtype=torch.bool).scatter_(2, idx, True)
        keep[:, :full] = g_keep.reshape(rows, full)
    if forced is not None:
        keep &= ~forced
    return keep


def _progress(session: PruningSession, desc: str):
    """A ``progress(iterable, total)`` wrapper, or ``None`` if bars are off/unavailable."""
    if not session.progress:
        return None
    try:
        from llm_surgeon.util import progress_bar
    except ImportError:  # pragma: no cover - the foundation module is always there
        return None
    return lambda it, total: progress_bar(it, total=total, desc=desc, enabled=True)


class LayerwiseMethod(Method):
    """A one-shot layer-wise pruner: per module, statistics of inputs -> new weights and mask.

    Subclasses implement :meth:`make_stat` and :meth:`prune_module`. ``self.config``
    must have a ``true_sequential`` attribute.
    """

    default_curvature: str | None = None
    structures = ("element", "n:m")
    default_update = UpdateMode.NONE
    #: One shot, as in the papers (``llm-surgeon compare`` uses it when ``--shots`` is not given).
    default_shots = 1

    def __init__(self, config: Any) -> None:
        self.config = config

    @abstractmethod
    def make_stat(self, d_in: int) -> InputStatistic:
        """An empty statistic of inputs of width ``d_in``."""

    @abstractmethod
    def prune_module(
        self, state: ModuleState, stat: InputStatistic, keep: float, nm: tuple[int, int] | None
    ) -> dict[str, Any]:
        """Prune one module in place so ``keep`` of its weights remain; update ``state.mask``.

        Returns:
            Diagnostics: ``predicted_cost`` (summed into the shot log) and anything
            noteworthy (kept in the shot log's ``info["modules"]``); may be empty.
        """

    def run_shot(self, session: PruningSession, shot: int, target_size: float) -> ShotLog:
        """Propagate the calibration data layer by layer, pruning every module to ``target_size``."""
        nm = structure_nm(session)
        keep = float(target_size)
        if nm is not None and keep < nm_kept(nm) - 1e-9:
            log.warning("target size %.4f is below what %d:%d implies (%.4f); pruning to the "
                        "N:M pattern", keep, nm[0], nm[1], nm_kept(nm))
        shot_log = ShotLog(shot=shot, target=target_size)
        states = {id(s.pm.module): s for s in session.states}
        solver_seconds = 0.0
        costs: list[float] = []
        infos: dict[str, dict[str, Any]] = {}

        def prune(pm: PrunableModule, stat: InputStatistic) -> None:
            nonlocal solver_seconds
            start = time.perf_counter()
            info = dict(self.prune_module(states[id(pm.module)], stat, keep, nm))
            if "predicted_cost" in info:
                costs.append(float(info.pop("predicted_cost")))
            if info:
                infos[pm.name] = info
            solver_seconds += time.perf_counter() - start

        start = time.perf_counter()
        was_training = session.model.training
        session.model.eval()
        try:
            passes = propagate(
                session.model,
                session.adapter,
                session.batches(),
                make_stat=self.make_stat,
                prune=prune,
                include=lambda pm: id(pm.module) in states,
                true_sequential=self.config.true_sequential,
                progress=_progress(session, f"{type(self).__name__} shot {shot}"),
            )
        finally:
            session.model.train(was_training)
        total = time.perf_counter() - start
        shot_log.seconds["passes"] = total - solver_seconds
        shot_log.seconds["solver"] = solver_seconds
        shot_log.info["layer_passes"] = passes
        if costs:
            shot_log.predicted_cost = sum(costs)
        if infos:
            shot_log.info["modules"] = infos
        shot_log.achieved = session.size()
        return shot_log


@torch.no_grad()
def write_back(state: ModuleState, weight: Tensor, removed: Tensor) -> None:
    """Store a pruned weight: grow the mask by ``removed`` and zero the removed weights.

    Args:
        state: the module; ``state.mask`` is updated (it only ever loses weights).
        weight: ``(d_out, d_in)`` new weights (any dtype/device).
        removed: ``(d_out, d_in)`` bool, weights removed by this shot.
    """
    state.mask = state.mask & ~removed.to(state.mask.device)
    w = state.pm.weight
    w.copy_(weight.to(device=w.device, dtype=w.dtype))
    state.apply_mask()
