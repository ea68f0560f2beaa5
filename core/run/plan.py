"""Memory and passes of a pruning run, planned from the model's configuration alone.

:func:`plan` reads a model's configuration (no weights: a meta-device model gives the
shapes of its prunable modules) and estimates, per rank of a job of ``nproc``
processes, what each strategy keeps resident at its peak:

* ``weights``: the model's parameters (every rank holds the whole model);
* ``factors``: the summed curvature statistics (``G``, ``A``, diagonals, power-iteration
  sums, SparseGPT's ``H``), which every rank holds after the all-reduce;
* ``inverses``: the float64 factorisations of the largest module the rank solves
  (damped matrices, Cholesky factors, inverses or their diagonals), streamed one
  module at a time, plus the rank's candidate costs;
* ``activations``: what one calibration batch keeps alive through its forward and
  backward pass (inputs of every observed Linear, autograd's saved tensors, logits,
  the batch's input Gram matrices), or the layer inputs and outputs of every window
  for layer-wise methods.

The peak is the runtime's own memory plus the weights plus the larger of the pass
phase (factors and activations) and the solve phase (factors of the rank's modules
and the solver's work). The coefficients below were measured with ``peak_rss_mb`` on
this project's CPU machine (glibc malloc, torch 2.13; README, "Planning memory").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

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
#: float64 matrices alive at the peak of one module's solve, as multiples of the larger
#: and the smaller factor's ``n x n``: row-col keeps both damped matrices and Cholesky
#: factors and forms one triangular inverse at a time for the inverse diagonals; element
#: and N:M updates form both inverses.
SOLVE_MATRICES = {"row-col": (4.0, 2.0), "element": (5.0, 3.0)}
#: float32 bytes per candidate weight the threshold holds (costs and their sorted copy).
CANDIDATE_BYTES = 8.0


@attrs.frozen
class ModuleShape:
    """One prunable Linear: ``d_out`` rows, ``d_w`` weight columns, and maybe a bias."""

    name: str
    layer: int
    role: str
    d_out: int
    d_w: int
    bias: bool = False

    @property
    def d_in(self) -> int:
        """Columns of ``theta = [W | b]``."""
        return self.d_w + int(self.bias)

    @property
    def weights(self) -> int:
        """Prunable weights (bias excluded)."""
        return self.d_out * self.d_w

    @property
    def cost(self) -> float:
        """Factorisation cost, the owner assignment's weight."""
        return float(self.d_out) ** 3 + float(self.d_in) ** 3


@attrs.frozen
class ModelShape:
    """What a plan needs of a model: its sizes and its prunable modules."""

    model_type: str
    layers: int
    hidden: int
    intermediate: int
    vocab: int
    parameters: int
    modules: tuple[ModuleShape, ...]


@attrs.frozen
class Strategy:
    """A method with its curvature estimator and structure, as a plan sees them.

    Attributes:
        method: method name; ``layerwise`` methods propagate layer by layer.
        curvature: estimator name (``None``: none).
        structure: structure name as given (``row-col``, ``element``, ``2:4``...).
        diagonal: the method reduces the curvature to its diagonal.
        layerwise: a layer-wise method (SparseGPT, Wanda).
        rank, iterations: nearest-kfac's options.
    """

    method: str
    curvature: str | None
    structure: str
    diagonal: bool = False
    layerwise: bool = False
    rank: int = 1
    iterations: int = 2

    @property
    def label(self) -> str:
        curvature = f" {self.curvature}" if self.curvature else ""
        return f"{self.method}{curvature} {self.structure}"


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
    """Elements of one batch's input Gram matrices (one per distinct input of a layer)."""
    inputs = {(m.layer, SHARED_INPUTS.get(m.role, m.name)): m.d_in for m in model.modules}
    return float(sum(d**2 for d in inputs.values()))


def _factors(model: ModelShape, strategy: Strategy) -> float:
    """Elements of the summed statistics of every module."""
    mods = model.modules
    name = strategy.curvature
    if name == "kfac":
        return sum(m.d_out**2 + m.d_in**2 for m in mods)
    if name == "nearest-kfac":
        return strategy.rank * sum(m.d_out**2 + m.d_in**2 for m in mods)
    if name == "activations":
        return sum(m.d_in**2 for m in mods)
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
    """Bytes of one rank's solve: its largest module's float64 work and its candidate costs."""
    if not modules:
        return 0.0
    if strategy.layerwise:  # H, its damped copy and inverse factor in float64, and W copies
        return max(4 * 8 * m.d_in**2 + 3 * cal.weight_bytes * m.weights for m in modules)
    theta = max(4 * 8 * m.weights for m in modules)
    if strategy.curvature in (None, "identity") or strategy.diagonal:
        work = theta
    else:
        large, small = SOLVE_MATRICES["row-col" if strategy.structure == "row-col" else "element"]
        work = theta + max(8 * (large * max(m.d_out, m.d_in) ** 2 + small * min(m.d_out, m.d_in) ** 2)
                           for m in modules)
    return work + _candidate_fraction(strategy.structure) * CANDIDATE_BYTES * sum(m.weights for m in modules)


def _candidate_fraction(structure: str) -> float:
    """Candidates per weight: none worth counting for row-col, ``n/m`` for N:M, else one."""
    from llm_surgeon.pruning.nm import parse_nm

    if structure == "row-col":
        return 0.0
    nm = parse_nm(structure)
    return nm[0] / nm[1] if nm else 1.0


def _owned(model: ModelShape, nproc: int) -> list[list[ModuleShape]]:
    from llm_surgeon.dist import assign_owners

    owners = assign_owners([m.cost for m in model.modules], nproc)
    return [[m for m, o in zip(model.modules, owners, strict=True) if o == r] for r in range(nproc)]


def estimate(model: ModelShape, strategy: Strategy, cal: Calibration) -> Estimate:
    """Memory per rank (the busiest rank) and passes of ``strategy`` on ``model``."""
    weights = model.parameters * cal.weight_bytes
    local = -(-cal.nsamples // cal.nproc)  # windows on the busiest rank
    if strategy.layerwise:
        layer = [m for m in model.modules if m.layer == 0]
        factors = sum(m.d_in**2 for m in {m.d_in: m for m in layer}.values()) * cal.statistic_bytes
        activations = 2 * local * cal.seqlen * model.hidden * cal.weight_bytes
        activations += _activations(attrs.evolve(model, layers=1), cal, backward=False)
        kept_factors = factors
    else:
        factors = _factors(model, strategy) * cal.statistic_bytes
        backward = strategy.curvature not in (None, "identity", "activations")
        activations = 0.0
        if strategy.curvature not in (None, "identity"):
            activations = _activations(model, cal, backward) + _grams(model) * cal.statistic_bytes
        kept_factors = factors
    per_rank = _owned(model, cal.nproc)
    solves = [_solve(mods, strategy, cal) for mods in per_rank]
    inverses = max(solves)
    if not strategy.layerwise and cal.nproc > 1:  # each rank keeps the curvatures of its own modules
        share = max(sum(m.d_out**2 + m.d_in**2 for m in mods) for mods in per_rank)
        kept_factors = factors * share / max(sum(m.d_out**2 + m.d_in**2 for m in model.modules), 1)
    evaluation = _activations(model, attrs.evolve(cal, batch_size=1), backward=False)
    phases = {
        "passes": factors + activations + FRAGMENTATION * activations,
        "solver": kept_factors + inverses,
        "evaluation": evaluation * (1 + FRAGMENTATION),
    }
    phase = max(phases, key=lambda k: phases[k])
    per_shot, passes = _passes(strategy, cal.shots)
    return Estimate(
        strategy=strategy.label, weights_mb=weights / MB, factors_mb=factors / MB,
        inverses_mb=inverses / MB, activations_mb=activations / MB,
        peak_mb=RUNTIME_MB + (weights + phases[phase]) / MB, phase=phase,
        passes_per_shot=per_shot, passes=passes,
    )


#: What ``plan`` shows without ``--method``/``--structure``: (method, curvature, structure).
DEFAULT_STRATEGIES = (
    ("surgeon", "kfac", "row-col"), ("surgeon", "kfac", "element"), ("surgeon", "kfac", "2:4"),
    ("surgeon", "nearest-kfac", "row-col"), ("kobd", None, "row-col"), ("lobd", None, "row-col"),
    ("sparsegpt", None, "element"), ("wanda", None, "element"), ("magnitude", None, "row-col"),
)


def load_config(spec: str, trust_remote_code: bool = False) -> Any:
    """A model's transformers configuration: of a ``config.json`` file, or as
    :func:`~llm_surgeon.model.loading.load_model_config` reads it (folder, GGUF, alias, hub)."""
    from pathlib import Path

    from llm_surgeon.model.loading import load_model_config

    path = Path(spec).expanduser()
    if path.is_file() and path.suffix == ".json":
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(str(path.parent) if path.name == "config.json" else str(path),
                                          trust_remote_code=trust_remote_code)
    return load_model_config(spec, trust_remote_code=trust_remote_code)


def model_shape(config: Any, *, layers: int | None = None, trust_remote_code: bool = False) -> ModelShape:
    """Sizes and prunable modules of the model of ``config``, from a meta-device instance."""
    import copy

    import torch
    from transformers import AutoModelForCausalLM

    from llm_surgeon.model.adapters import adapter_for

    config = copy.deepcopy(config)
    if layers is not None:
        config.num_hidden_layers = layers
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    modules = tuple(ModuleShape(pm.name, pm.layer, pm.role, pm.shape[0], pm.shape[1], pm.has_bias)
                    for pm in adapter_for(model).prunable_modules(model))
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return ModelShape(
        model_type=str(config.model_type), layers=int(text.num_hidden_layers), hidden=int(text.hidden_size),
        intermediate=max(max(m.d_out, m.d_w) for m in modules), vocab=int(text.vocab_size),
        parameters=sum(p.numel() for p in model.parameters()), modules=modules,
    )


def resolve_strategy(method: str, curvature: str | None, structure: str,
                     curvature_options: dict[str, Any] | None = None) -> Strategy:
    """A :class:`Strategy` from registered names (the method's default curvature if none)."""
    from llm_surgeon.registry.registry import Kind, get_registry
    from llm_surgeon.run.validate import method_attribute

    registry = get_registry()
    record = registry.get(Kind.METHOD, method)
    config = record.make_config()
    layerwise = hasattr(record.factory, "make_stat")
    curvature = None if layerwise else (curvature or method_attribute(record, config, "default_curvature"))
    options = dict(curvature_options or {})
    if curvature is not None:  # validate the name and options like a run would
        registry.get(Kind.CURVATURE, curvature).make_config(**options)
    return Strategy(method=method, curvature=curvature, structure=structure,
                    diagonal=bool(method_attribute(record, config, "diagonal", False)),
                    layerwise=layerwise, rank=int(options.get("rank", 1)),
                    iterations=int(options.get("iterations", 2)))


def plan(model: ModelShape, strategies: Sequence[Strategy], cal: Calibration) -> list[Estimate]:
    """The :class:`Estimate` of every strategy."""
    return [estimate(model, strategy, cal) for strategy in strategies]
