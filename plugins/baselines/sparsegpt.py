"""SparseGPT: layer-wise sequential OBS with lazy batch updates (Frantar & Alistarh, 2023).

Reference: E. Frantar, D. Alistarh, "SparseGPT: Massive Language Models Can Be
Accurately Pruned in One-Shot", ICML 2023 (arXiv:2301.00774), Algorithm 1.

Relation to the shared maths of llm-surgeon. Per Linear module, SparseGPT minimises
the layer reconstruction error ``||W X - Ŵ X||²`` over calibration inputs
``X: (d_in, N)``. Its Hessian with respect to ``vec(W)`` (row-major) is the Kronecker
curvature ``F = I ⊗ A`` with ``A = H = (2/N) X Xᵀ``: ``G`` is the identity, so rows are
independent and share the same ``A`` (:func:`sparsegpt_curvature` builds this as a
:class:`~llm_surgeon.curvature.KroneckerCurvature`). Within a row, SparseGPT runs
*sequential* OBS: columns are fixed left to right, each either kept or set to zero, and
the free columns to its right receive the OBS update

    δ_F = -(w_j - q_j) / [H_F⁻¹]_00 · [H_F⁻¹]_0,:       (F = {j, j+1, ...})

The rows of the upper Cholesky factor ``U`` of ``H⁻¹`` hold exactly these quantities
(``[H_F⁻¹]_0,: = U_jj · U_j,j:``), so one factorisation serves every step; the score of
a weight is ``w² / U_jj²`` (its OBS cost). Because every step starts from the optimum of
the free columns, the predicted loss increase ``½ δᵀ F δ`` of the whole update equals
the sum of the per-step costs ``(w_j - q_j)² / (2 U_jj²)``, reported as the shot's
``predicted_cost``. Lazy batching applies the updates of a block of ``blocksize``
columns to the columns after the block in one matrix product; it changes the order of
work, not the result.

Faithful to the paper and its reference implementation: H accumulated as ``(2/N) X Xᵀ``
with ``N`` the number of calibration *tokens* (the reference divides by the number of
sequences; the scale does not change masks or updates since dampening is relative);
dampening ``percdamp · mean(diag H)``; columns that never see a nonzero input (zero
diagonal) are set to zero and get ``H_jj = 1``; unstructured masks chosen at the start
of every block from one threshold over the block's scores (``selection="block"``; the
counts are distributed so that the layer keeps exactly ``round(keep · numel)``), N:M
masks chosen every ``M`` columns. The bias is not part of the problem (SparseGPT ignores
the bias column of ``[W | b]``) and stays as it is.
"""

from __future__ import annotations

import logging
from typing import Any

import attrs
import torch
from torch import Tensor

from llm_surgeon.curvature import KroneckerCurvature
from llm_surgeon.errors import NumericalError
from llm_surgeon.plugins.baselines._layerwise import (
    LayerwiseMethod,
    nm_kept,
    nm_protected,
    select_lowest,
    write_back,
)
from llm_surgeon.pruning import ModuleState, UpdateMode
from llm_surgeon.solver import CurvatureSolver, Damping, damped_cholesky, solver_for
from llm_surgeon.util import STATISTICS_DTYPES, one_of, statistics_dtype, torch_dtype

log = logging.getLogger(__name__)

@attrs.frozen
class SparseGPTConfig:
    """Options of ``sparsegpt``.

    Attributes:
        blocksize: columns per lazy-update block (rounded down to a multiple of M for N:M).
        percdamp: dampening, as a fraction of the mean diagonal of H.
        selection: ``block`` (one threshold over each block, as the paper) or ``row``
            (each row keeps exactly the target fraction of every block).
        true_sequential: prune the adapter's sequential groups of a layer one after the
            other (q/k/v, then o, ...), each seeing the already-pruned groups' outputs.
        dtype: precision of H and of the solve (``float32`` as the reference, ``float64``).
    """

    blocksize: int = attrs.field(default=128, validator=attrs.validators.ge(1))
    percdamp: float = attrs.field(default=0.01, validator=attrs.validators.ge(0.0))
    selection: str = attrs.field(default="block", validator=one_of("block", "row"))
    true_sequential: bool = False
    dtype: str = attrs.field(default="float32", validator=statistics_dtype)


class HessianStatistic:
    """Accumulates ``H = (2/N) X Xᵀ`` over calibration tokens.

    Args:
        d_in: input width.
        dtype: accumulation dtype.
    """

    def __init__(self, d_in: int, dtype: torch.dtype = torch.float32) -> None:
        self.d_in = d_in
        self.dtype = dtype
        self.gram: Tensor | None = None
        self.tokens = 0

    def add_batch(self, x: Tensor) -> None:
        """Add inputs ``x: (tokens, d_in)``."""
        x = x.to(self.dtype)
        if self.gram is None:
            self.gram = torch.zeros(self.d_in, self.d_in, dtype=self.dtype, device=x.device)
        self.gram.addmm_(x.T, x)
        self.tokens += x.shape[0]

    def hessian(self) -> Tensor:
        """``H: (d_in, d_in)``."""
        if self.gram is None or self.tokens == 0:
            raise ValueError("no inputs were added")
        return self.gram * (2.0 / self.tokens)


@attrs.define
class SparseGPTResult:
    """Outcome of :func:`sparsegpt_prune` on one weight matrix.

    Attributes:
        weight: ``(d_out, d_in)`` updated weights, zero where removed.
        removed: ``(d_out, d_in)`` bool, removed weights (including previously dead ones).
        predicted_cost: ``½ δᵀ (I ⊗ H_damped) δ`` of the change ``δ``.
        damping: the absolute dampening added to the diagonal of H.
        escalations: how often dampening was multiplied by 10 for Cholesky to succeed.
        dead_columns: inputs with zero diagonal in H.
    """

    weight: Tensor
    removed: Tensor
    predicted_cost: float
    damping: float
    escalations: int
    dead_columns: int


def sparsegpt_curvature(hessian: Tensor, d_out: int) -> KroneckerCurvature:
    """SparseGPT's curvature of one layer as ``I ⊗ H``: ``G`` identity, ``A = H`` (undamped)."""
    return KroneckerCurvature(factors=((None, hessian),), d_out=d_out, d_in=hessian.shape[0])


def sparsegpt_solver(hessian: Tensor, d_out: int, percdamp: float = 0.01) -> CurvatureSolver:
    """The shared solver of :func:`sparsegpt_curvature`, damping ``A`` as SparseGPT does.

    SparseGPT adds ``percdamp · mean(diag H)`` to ``H``: the relative damping ``a``.
    """
    return solver_for(sparsegpt_curvature(hessian, d_out), Damping(g=0.0, a=percdamp))


def inverse_cholesky(hessian: Tensor, percdamp: float) -> tuple[Tensor, float, int]:
    """Upper Cholesky factor ``U`` of ``(H + λI)⁻¹`` with ``λ = percdamp · mean(diag H)``.

    The dampening and its escalation (×10 while Cholesky fails) are the shared solver's
    (:func:`llm_surgeon.solver.damped_cholesky`, the same relative dampening as
    the input factor ``A`` of a Kronecker curvature); factorisations run in float64.

    Returns:
        ``(U, λ, escalations)`` with ``U: (d, d)`` upper triangular in ``hessian``'s
        dtype, ``(H + λI)⁻¹ = Uᵀ U``, and ``λ`` the absolute dampening.
    """
    factor = damped_cholesky(hessian, percdamp, name="H (SparseGPT)")
    upper, info = torch.linalg.cholesky_ex(factor.inverse(), upper=True)
    if int(info) != 0 or not bool(torch.isfinite(upper).all()):
        raise NumericalError(f"Cholesky of the inverse of H ({hessian.shape[0]}x{hessian.shape[0]}) failed")
    damp = float((factor.matrix.diagonal() - hessian.to(torch.float64).diagonal()).mean())
    return upper.to(hessian.dtype), damp, factor.escalations


def _block_counts(d_out: int, i1: int, i2: int, remove: float, per_row: bool) -> int:
    """Removals in columns ``[i1, i2)`` so the running total stays ``round(remove · size)``."""
    scale = 1 if per_row else d_out
    return round(remove * scale * i2) - round(remove * scale * i1)


@torch.no_grad()
def sparsegpt_prune(
    weight: Tensor,
    hessian: Tensor,
    *,
    keep: float,
    alive: Tensor | None = None,
    nm: tuple[int, int] | None = None,
    blocksize: int = 128,
    percdamp: float = 0.01,
    selection: str = "block",
    fixed_removed: Tensor | None = None,
) -> SparseGPTResult:
    """Prune one weight matrix with SparseGPT (Algorithm 1 of the paper).

    Args:
        weight: ``W: (d_out, d_in)`` in the compute dtype (not modified).
        hessian: ``H: (d_in, d_in)`` undamped, same dtype and device.
        keep: fraction of weights to keep (``1 - sparsity``); ignored with ``fixed_removed``.
        alive: ``(d_out, d_in)`` bool of weights still alive (dead ones stay removed).
        nm: ``(n, m)``: remove n of every m consecutive inputs. With ``keep > 1 - n/m``
            (an intermediate shot) the block's lowest scores among each group's ``n``
            lowest are removed instead.
        blocksize: columns per lazy-update block.
        percdamp: relative dampening.
        selection: ``block`` or ``row`` (see :class:`SparseGPTConfig`).
        fixed_removed: ``(d_out, d_in)`` bool; if given, this mask is used as is
            (no selection) and only the updates are computed.

    Returns:
        The new weights and removal mask.

    One function on purpose: it follows Algorithm 1 of the paper line by line (blocks,
    mask selection, column sweep, lazy update), which is how it is checked against it.
    """
    w_all = weight.clone()
    h = hessian.clone()
    d_out, d_in = w_all.shape
    forced = torch.zeros(d_out, d_in, dtype=torch.bool, device=w_all.device)
    if alive is not None:
        forced |= ~alive.to(w_all.device)
    dead = h.diagonal() == 0
    h[dead, dead] = 1.0
    forced[:, dead] = True
    w_all[forced] = 0.0
    if fixed_removed is not None:
        forced |= fixed_removed.to(w_all.device)

    upper, damp, escalations = inverse_cholesky(h, percdamp)
    remove = 1.0 - keep
    final_nm = nm is not None and keep <= nm_kept(nm) + 1e-9
    if nm is not None:
        blocksize = max(nm[1], blocksize - blocksize % nm[1])
    per_row = selection == "row"
    removed = forced.clone()
    cost = torch.zeros((), dtype=w_all.dtype, device=w_all.device)

    for i1 in range(0, d_in, blocksize):
        i2 = min(i1 + blocksize, d_in)
        w1 = w_all[:, i1:i2].clone()
        u1 = upper[i1:i2, i1:i2]
        diag = u1.diagonal()
        err1 = torch.zeros_like(w1)
        r1 = removed[:, i1:i2]
        if fixed_removed is None and not final_nm:
            scores = w1.square() / diag.square()
            protected = None if nm is None else nm_protected(scores, nm[1] - nm[0], nm[1], r1)
            count = _block_counts(d_out, i1, i2, remove, per_row)
            r1 = select_lowest(scores, count, forced=r1, protected=protected, per_row=per_row)
        for j in range(i2 - i1):
            if fixed_removed is None and final_nm and j % nm[1] == 0 and j + nm[1] <= i2 - i1:
                group = slice(j, j + nm[1])
                scores = w1[:, group].square() / diag[group].square()
                r1[:, group] |= ~nm_protected(scores, nm[1] - nm[0], nm[1], r1[:, group])
            w = w1[:, j]
            q = torch.where(r1[:, j], torch.zeros_like(w), w)
            err = (w - q) / diag[j]
            w1[:, j:] -= torch.outer(err, u1[j, j:])
            w1[:, j] = q
            err1[:, j] = err
            cost += err.square().sum() / 2
        w_all[:, i1:i2] = w1
        removed[:, i1:i2] = r1
        w_all[:, i2:] -= err1 @ upper[i1:i2, i2:]

    w_all[removed] = 0.0
    return SparseGPTResult(w_all, removed, float(cost), damp, escalations, int(dead.sum()))


class SparseGPTMethod(LayerwiseMethod):
    """SparseGPT (Frantar & Alistarh, 2023): layer-wise sequential OBS with lazy updates."""

    default_update = UpdateMode.FULL

    def __init__(self, config: SparseGPTConfig | None = None) -> None:
        super().__init__(config or SparseGPTConfig())

    def make_stat(self, d_in: int) -> HessianStatistic:
        return HessianStatistic(d_in, torch_dtype(self.config.dtype, STATISTICS_DTYPES))

    def prune_module(
        self, state: ModuleState, stat: HessianStatistic, keep: float, nm: tuple[int, int] | None
    ) -> dict[str, Any]:
        hessian = stat.hessian()
        weight = state.pm.weight.detach().to(device=hessian.device, dtype=hessian.dtype)
        result = sparsegpt_prune(
            weight,
            hessian,
            keep=keep,
            alive=state.mask.to(hessian.device),
            nm=nm,
            blocksize=self.config.blocksize,
            percdamp=self.config.percdamp,
            selection=self.config.selection,
        )
        write_back(state, result.weight, result.removed)
        info: dict[str, Any] = {"predicted_cost": result.predicted_cost}
        if result.escalations:
            info["damping_escalations"] = result.escalations
            log.warning("%s: dampening escalated %d times", state.pm.name, result.escalations)
        if result.dead_columns:
            info["dead_columns"] = result.dead_columns
        return info


def register_sparsegpt(register) -> None:
    """Register ``sparsegpt`` (call from a ``register_methods`` hook implementation)."""
    register("sparsegpt", SparseGPTMethod, config=SparseGPTConfig,
             description="SparseGPT: layer-wise sequential OBS (I⊗H), lazy batch updates")
