"""Memory and passes of a pruning run, planned from the model's configuration alone.

:func:`plan` reads a model's configuration (no weights: a meta-device model gives the
shapes of its prunable modules) and estimates, per rank of a job of ``nproc``
processes, what each strategy keeps resident at its peak:

* ``weights``: the model's parameters (every rank holds the whole model) and the
  masks of its prunable weights (one byte each);
* ``factors``: the summed curvature statistics (``G``, ``A`` once per distinct layer
  input, diagonals, power-iteration sums, SparseGPT's ``H``), which every rank holds
  after the all-reduce;
* ``inverses``: the float64 factorisations of the largest module the rank solves
  (damped matrices, Cholesky factors, inverses or their diagonals, weight copies),
  streamed one module at a time, or the rank's candidate costs if larger (the
  threshold frees them before the updates);
* ``activations``: what one calibration batch keeps alive through its forward and
  backward pass (inputs of every observed Linear, autograd's saved tensors, logits;
  Gram matrices are added straight into the packed sums), or the layer inputs and
  outputs of every window for layer-wise methods.

The peak is the runtime's own memory plus the weights plus the larger of the pass
phase (the packed running sums and activations, or the unpacked factors at its end)
and the solve phase (factors of the rank's modules
and the solver's work). The coefficients below were measured with ``peak_rss_mb`` on
this project's CPU machine (glibc malloc, torch 2.13; README, ``llm-surgeon plan``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

from llm_surgeon.run.plan_shapes import (
    DEFAULT_STRATEGIES,
    ModelShape,
    ModuleShape,
    Strategy,
    load_config,
    model_shape,
    resolve_strategy,
)

__all__ = ["DEFAULT_STRATEGIES", "Calibration", "Estimate", "ModelShape", "ModuleShape", "Strategy",
           "estimate", "load_config", "model_shape", "plan", "resolve_strategy"]

#: Resident memory of Python, torch, transformers and llm-surgeon without a model (MiB).
RUNTIME_MB = 385.0
#: Saved tensors of one decoder layer in a backward pass, per token, in units of the
#: model dtype: ``BACKWARD_HIDDEN * hidden + BACKWARD_INTERMEDIATE * intermediate``.
BACKWARD_HIDDEN, BACKWARD_INTERMEDIATE = 13.2, 4.8
#: Copies of the float32 logits alive at the peak of a backward pass (logits, log-softmax, grads).
BACKWARD_LOGITS = 2.8
#: Linear inputs kept per token and layer by a forward-only pass's hooks, and logits copies.
FORWARD_HIDDEN, FORWARD_INTERMEDIATE, FORWARD_LOGITS = 3.0, 1.0, 1.9
#: Freed activation memory the allocator does not hand back while the sums grow (a
#: fraction of the activations, measured between one and several batches).
FRAGMENTATION = 0.15
#: The evaluation forward pass (batch 1) as a multiple of a forward-only calibration pass.
EVALUATION = 1.5
#: float64 matrices alive at the peak of one module's solve, as multiples of the larger
#: and the smaller factor's ``n x n``: row-col keeps both damped matrices and Cholesky
#: factors and forms one triangular inverse at a time for the inverse diagonals; element
#: and N:M updates form both inverses. Checked against the ``scale`` profile's records
#: (Llama-2-7B widths), where the solve is the peak (README, "Big models").
SOLVE_MATRICES = {"row-col": (4.0, 2.0), "element": (5.0, 3.0)}
#: float32 bytes per candidate weight the threshold holds (costs and their sorted copy).
CANDIDATE_BYTES = 8.0


@attrs.frozen
class Calibration:
    """Calibration windows, batch size, ranks and dtypes of a planned run."""

    nsamples: int = 32
    seqlen: int = 512
    batch_size: int = 1
    nproc: int = 1
    shots: int = 5
    weight_bytes: int = 4
    statistic_bytes: int = 4


@attrs.frozen
class Estimate:
    """Memory per rank (MiB) and passes of one strategy; see the module docstring."""

    strategy: str
    weights_mb: float
    factors_mb: float
    inverses_mb: float
    activations_mb: float
    peak_mb: float
    phase: str
    passes_per_shot: str
    passes: int

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


MB = 2.0**20


def _activations(model: ModelShape, cal: Calibration, backward: bool) -> float:
    """Bytes one batch keeps alive at the peak of its pass."""
    tokens = cal.batch_size * cal.seqlen
    if backward:
        per_layer = BACKWARD_HIDDEN * model.hidden + BACKWARD_INTERMEDIATE * model.intermediate
        logits = BACKWARD_LOGITS
    else:
        per_layer = FORWARD_HIDDEN * model.hidden + FORWARD_INTERMEDIATE * model.intermediate
        logits = FORWARD_LOGITS
    return tokens * (model.layers * per_layer * cal.weight_bytes + logits * model.vocab * 4)


#: Roles whose modules read the same input tensor (one Gram matrix per batch between them).
SHARED_INPUTS = {"q": "qkv", "k": "qkv", "v": "qkv", "gate": "gate_up", "up": "gate_up"}


def _grams(model: ModelShape) -> float:
    """Elements of one ``d_in x d_in`` matrix per distinct input of a layer: the input
    factors ``A`` (modules reading the same tensor, q/k/v and gate/up, share one ``A``:
    bitwise the same sum)."""
    return float(sum(d**2 for d in _inputs(model)))


def _inputs(model: ModelShape) -> list[int]:
    """``d_in`` of every distinct input of a layer (q/k/v and gate/up read one tensor)."""
    return list({(m.layer, SHARED_INPUTS.get(m.role, m.name)): m.d_in for m in model.modules}.values())


def _running(model: ModelShape, strategy: Strategy) -> float:
    """Elements of the running sums during the passes: symmetric sums (K-FAC's ``G`` and
    ``A``, the activations' ``A``) keep their packed upper block triangle only."""
    from llm_surgeon.curvature.symmetric import packed_size

    if strategy.curvature == "kfac":
        return float(sum(packed_size(m.d_out) for m in model.modules) + sum(map(packed_size, _inputs(model))))
    if strategy.curvature == "activations":
        return float(sum(map(packed_size, _inputs(model))))
    return _factors(model, strategy)


def _factors(model: ModelShape, strategy: Strategy) -> float:
    """Elements of the summed statistics of every module (shared input factors once)."""
    mods = model.modules
    name = strategy.curvature
    if name == "kfac":
        return sum(m.d_out**2 for m in mods) + _grams(model)
    if name == "nearest-kfac":  # the power iteration gives each module its own A_r
        return strategy.rank * sum(m.d_out**2 + m.d_in**2 for m in mods)
    if name == "activations":
        return _grams(model)
    if name == "diagonal":
        return sum(m.d_out * m.d_in for m in mods)
    return 0.0


def _passes(strategy: Strategy, shots: int) -> tuple[str, int]:
    """Calibration passes per shot (as text) and over the run."""
    if strategy.layerwise:
        return "2 per layer", 2 * shots
    name = strategy.curvature
    if name == "identity" or name is None:
        return "0", 0
    if name == "nearest-kfac":
        cold, warm = 1 + 2 * strategy.iterations, 2 * strategy.iterations
        return f"{cold}, then {warm}", cold + warm * (shots - 1)
    return "1", shots


def _solve(modules: Sequence[ModuleShape], strategy: Strategy, cal: Calibration) -> float:
    """Bytes of one rank's solve: its largest module's float64 work, or its candidate costs if larger."""
    if not modules:
        return 0.0
    if strategy.layerwise:  # H, its damped copy and inverse factor in float64, and W copies
        return max(4 * 8 * m.d_in**2 * strategy.hessian + 3 * 8 * m.weights for m in modules)
    theta = max(4 * 8 * m.weights for m in modules)
    if strategy.curvature in (None, "identity") or strategy.diagonal:
        work = theta
    else:
        rowcol = strategy.structure in ("row-col", "dims")  # rows, columns: no full inverse
        large, small = SOLVE_MATRICES["row-col" if rowcol else "element"]
        factorisations = max(8 * (large * max(m.d_out, m.d_in) ** 2 + small * min(m.d_out, m.d_in) ** 2)
                             for m in modules)
        # Row-col forms its inverse diagonals before the update copies the weights; an
        # element or N:M update holds both inverses and the weights' copies together.
        work = max(theta, factorisations) if rowcol else theta + factorisations
    # The threshold's candidate costs are freed before the modules' updates run.
    return max(work, _candidate_fraction(strategy.structure) * CANDIDATE_BYTES * sum(m.weights for m in modules))


def _candidate_fraction(structure: str) -> float:
    """Candidates per weight: none worth counting for row-col and dims (rows, columns,
    neurons and heads), ``n/m`` for N:M, else one."""
    from llm_surgeon.pruning.nm import parse_nm

    if structure in ("row-col", "dims"):
        return 0.0
    nm = parse_nm(structure)
    return nm[0] / nm[1] if nm else 1.0


def _owned(model: ModelShape, nproc: int) -> list[list[ModuleShape]]:
    from llm_surgeon.dist import assign_owners

    owners = assign_owners([m.cost for m in model.modules], nproc)
    return [[m for m, o in zip(model.modules, owners, strict=True) if o == r] for r in range(nproc)]


def estimate(model: ModelShape, strategy: Strategy, cal: Calibration) -> Estimate:
    """Memory per rank (the busiest rank) and passes of ``strategy`` on ``model``."""
    weights = model.parameters * cal.weight_bytes + sum(m.weights for m in model.modules)  # + bool masks
    local = -(-cal.nsamples // cal.nproc)  # windows on the busiest rank
    if strategy.layerwise:
        layer = [m for m in model.modules if m.layer == 0]
        inputs = {SHARED_INPUTS.get(m.role, m.name): m.d_in for m in layer}
        factors = sum(d**2 if strategy.hessian else 2 * d for d in inputs.values()) * cal.statistic_bytes
        activations = 2 * local * cal.seqlen * model.hidden * cal.weight_bytes
        activations += _activations(attrs.evolve(model, layers=1), cal, backward=False)
        running = factors
    else:
        factors = _factors(model, strategy) * cal.statistic_bytes
        running = _running(model, strategy) * cal.statistic_bytes
        backward = strategy.curvature not in (None, "identity", "activations")
        activations = 0.0
        if strategy.curvature not in (None, "identity"):  # Grams go straight into the packed sums
            activations = _activations(model, cal, backward)
    kept_factors = factors
    per_rank = _owned(model, cal.nproc)
    solves = [_solve(mods, strategy, cal) for mods in per_rank]
    inverses = max(solves)
    if not strategy.layerwise and cal.nproc > 1:  # each rank keeps the curvatures of its own modules
        share = max(sum(m.d_out**2 + m.d_in**2 for m in mods) for mods in per_rank)
        kept_factors = factors * share / max(sum(m.d_out**2 + m.d_in**2 for m in model.modules), 1)
    if strategy.diagonal:  # diag(F) of every module, formed while the factors still exist
        diagonals = sum(m.d_out * m.d_in for m in model.modules) * cal.statistic_bytes
        factors_at_end = factors + diagonals
        kept_factors = diagonals * (kept_factors / factors if factors else 1.0)
    else:
        factors_at_end = factors
    if running < factors:  # unpacking mirrors one sum at a time
        largest = max([m.d_out for m in model.modules] + _inputs(model))
        factors_at_end += largest**2 * cal.statistic_bytes
    evaluation = _activations(model, attrs.evolve(cal, batch_size=1), backward=False)
    phases = {
        "passes": max(running + activations + FRAGMENTATION * activations, factors_at_end),
        "solver": kept_factors + inverses,
        "evaluation": evaluation * EVALUATION,
    }
    phase = max(phases, key=lambda k: phases[k])
    per_shot, passes = _passes(strategy, cal.shots)
    return Estimate(
        strategy=strategy.label, weights_mb=weights / MB, factors_mb=factors / MB,
        inverses_mb=inverses / MB, activations_mb=activations / MB,
        peak_mb=RUNTIME_MB + (weights + phases[phase]) / MB, phase=phase,
        passes_per_shot=per_shot, passes=passes,
    )


def plan(model: ModelShape, strategies: Sequence[Strategy], cal: Calibration) -> list[Estimate]:
    """The :class:`Estimate` of every strategy."""
    return [estimate(model, strategy, cal) for strategy in strategies]
