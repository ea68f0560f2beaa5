"""The contract every architecture adapter must keep, as one call for adapter authors.

::

    from llm_surgeon.testing import check_adapter

    report = check_adapter(MyConfig(hidden_size=16, num_hidden_layers=2, ...))
    print(report.summary())

:func:`check_adapter` builds a tiny model from a transformers config (or takes a model)
and checks, raising ``AssertionError`` with the module's name at the first breach:

1. ``modules``: the adapter finds prunable modules; each is called in a forward pass
   with inputs of width ``d_in`` and outputs of width ``d_out`` (so a transposed
   ``Conv1D`` is presented the right way round); every Linear of a decoder layer is
   listed; fused projections' role parts cover their rows in order;
   ``sequential_groups`` name only declared roles.
2. ``propagation``: layer-wise propagation (:mod:`llm_surgeon.pruning.layerwise`) in
   float64 feeds every module exactly the inputs it gets in the model's own forward,
   and the last layer's propagated output equals the model's.
3. ``couplings``: every declared coupling is exact, and dead-structure propagation over
   them after random row and column removals changes no logit (:mod:`.coupling_check`).
4. ``methods``: every registered method with every structure it supports prunes to
   its target in 2 shots (1 for methods whose default is one shot) (:func:`check_prune`:
   sizes, zeros, shrinking masks, finite logits); ``dims`` only where couplings exist.
5. ``round trip``: a pruned model saved with :func:`llm_surgeon.save_model` reloads with
   plain transformers with equal logits and the same zeros.
6. ``compact export``: the compact form of a ``row-col`` result has the zeroed model's
   logits and its plan's parameter count (skipped for families it does not support).
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Sequence
from typing import Any

import attrs
import torch
from torch import Tensor, nn

from llm_surgeon.model.adapters import ArchitectureAdapter, PrunableModule, adapter_for
from llm_surgeon.model.loading import save_model
from llm_surgeon.model.tiny import random_tokens
from llm_surgeon.pruning.layerwise import capture_layer_inputs, propagate, run_layer
from llm_surgeon.registry.registry import Kind, get_registry
from llm_surgeon.testing.coupling_check import check_couplings, check_dead
from llm_surgeon.testing.prune_check import check_prune

#: Structures every adapter is checked with (``2:4`` stands for the N:M structure;
#: ``dims`` runs only for adapters that declare couplings).
DEFAULT_STRUCTURES = ("row-col", "element", "2:4", "dims")


@attrs.define
class ContractReport:
    """What :func:`check_adapter` checked.

    Attributes:
        model_type: the model's ``config.model_type``.
        modules: number of prunable modules.
        roles: the roles found (parts of fused projections included).
        checks: check name -> ``"ok"`` or ``"skipped: reason"``.
    """

    model_type: str
    modules: int = 0
    roles: tuple[str, ...] = ()
    checks: dict[str, str] = attrs.field(factory=dict)

    def skipped(self) -> dict[str, str]:
        """The checks that did not run, with their reasons."""
        return {k: v for k, v in self.checks.items() if v != "ok"}

    def summary(self) -> str:
        """One line per check."""
        lines = [f"{self.model_type}: {self.modules} prunable modules, roles {', '.join(self.roles)}"]
        lines += [f"  {name}: {result}" for name, result in self.checks.items()]
        return "\n".join(lines)


def _as_model(model_or_config: Any, seed: int) -> nn.Module:
    if isinstance(model_or_config, nn.Module):
        return model_or_config.eval()
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(model_or_config).float().eval()


def _linear_like(module: nn.Module) -> bool:
    from llm_surgeon.model.adapters import is_transposed_linear

    return isinstance(module, nn.Linear) or is_transposed_linear(module)


@torch.no_grad()
def check_modules(model: nn.Module, adapter: ArchitectureAdapter, tokens: Tensor) -> list[PrunableModule]:
    """Check 1 (see the module docstring); returns the prunable modules."""
    modules = adapter.prunable_modules(model)
    assert modules, f"{type(adapter).__name__} found no prunable modules"
    names = dict(model.named_modules())
    seen: dict[str, tuple[int, int]] = {}
    hooks = []
    for pm in modules:
        assert names.get(pm.name) is pm.module, f"{pm.name} is not that module of the model"
        hooks.append(pm.module.register_forward_hook(
            lambda _m, args, out, name=pm.name: seen.__setitem__(name, (args[0].shape[-1], out.shape[-1]))))
        if pm.parts:
            bounds = [(p.start, p.stop) for p in pm.parts]
            flat = [b for pair in bounds for b in pair]
            assert flat[0] == 0 and flat[-1] == pm.shape[0] and flat == sorted(flat) and all(
                a == b for a, b in zip(flat[1:-1:2], flat[2::2], strict=True)
            ), f"{pm.name}: role parts {bounds} do not cover rows 0..{pm.shape[0]} in order"
    try:
        model(input_ids=tokens, use_cache=False)
    finally:
        for h in hooks:
            h.remove()
    for pm in modules:
        assert pm.name in seen, f"{pm.name} is not called in a forward pass"
        d_out, d_in = pm.shape
        assert seen[pm.name] == (d_in, d_out), (
            f"{pm.name}: weight presented as (d_out, d_in) = {pm.shape}, but the module maps "
            f"width {seen[pm.name][0]} to {seen[pm.name][1]} (a transposed weight?)")
    listed = {id(pm.module) for pm in modules}
    prefix = adapter.layers_prefix(model)
    for name, module in model.named_modules():
        if name.startswith(prefix + ".") and _linear_like(module):
            assert id(module) in listed, f"{name} is a Linear of a decoder layer that the adapter does not list"
    roles = {r for pm in modules for r in (pm.role, *pm.roles)}
    for group in adapter.sequential_groups:
        for role in group:
            assert role in roles, f"sequential_groups name role {role!r}, which no module has"
    return modules


class _Inputs:
    """Layer-wise statistic that keeps every input it is given."""

    def __init__(self, _d_in: int) -> None:
        self.xs: list[Tensor] = []

    def add_batch(self, x: Tensor) -> None:
        self.xs.append(x.clone())


@torch.no_grad()
def check_propagation(model: nn.Module, adapter: ArchitectureAdapter, tokens: Tensor) -> None:
    """Check 2: layer-wise propagation reproduces the model's own forward (float64)."""
    model = copy.deepcopy(model).double()
    modules = adapter.prunable_modules(model)
    batches = list(tokens.split(2))
    own: dict[str, list[Tensor]] = {pm.name: [] for pm in modules}
    last_out: list[Tensor] = []
    layers = adapter.decoder_layers(model)
    hooks = [pm.module.register_forward_hook(
        lambda _m, args, _o, name=pm.name: own[name].append(args[0].reshape(-1, args[0].shape[-1])))
        for pm in modules]
    hooks.append(layers[-1].register_forward_hook(
        lambda _m, _a, out: last_out.append(out if isinstance(out, Tensor) else out[0])))
    try:
        for batch in batches:
            model(input_ids=batch, use_cache=False)
    finally:
        for h in hooks:
            h.remove()
    for true_sequential in (False, True):
        fed: dict[str, _Inputs] = {}

        def keep(pm: PrunableModule, stat: _Inputs, fed: dict[str, _Inputs] = fed) -> None:
            fed[pm.name] = stat

        propagate(model, adapter, batches, make_stat=_Inputs, true_sequential=true_sequential, prune=keep)
        for pm in modules:
            assert pm.name in fed, f"propagation never fed {pm.name}"
            got, want = torch.cat(fed[pm.name].xs), torch.cat(own[pm.name])
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10,
                                       msg=lambda m, n=pm.name: f"{n}: propagated inputs differ: {m}")
    inputs = capture_layer_inputs(model, adapter, batches)
    for index, layer in enumerate(layers):
        inputs.hidden = run_layer(layer, inputs, index)
    torch.testing.assert_close(torch.cat(inputs.hidden), torch.cat(last_out), rtol=1e-10, atol=1e-10)


def _combinations(structures: Sequence[str], methods: Sequence[str] | None) -> list[tuple[str, str, int]]:
    """``(method, structure, shots)`` for every structure each method supports; 2 shots
    unless the method has its own default (the one-shot layer-wise methods)."""
    from llm_surgeon.pruning.nm import structure_request

    registry = get_registry()
    out = []
    for method in methods if methods is not None else registry.names(Kind.METHOD):
        created = registry.get(Kind.METHOD, method).create()
        for structure in structures:
            name, _ = structure_request(structure, {})
            if created.structures is None or name in created.structures:
                out.append((method, structure, created.default_shots or 2))
    return out


@torch.no_grad()
def check_round_trip(model: nn.Module, tokens: Tensor) -> None:
    """Check 5: ``save_model`` -> plain ``from_pretrained``: equal logits, same zeros."""
    from transformers import AutoModelForCausalLM

    with tempfile.TemporaryDirectory() as folder:
        save_model(model, None, folder)
        loaded = AutoModelForCausalLM.from_pretrained(folder, dtype=model.dtype).eval()
    want, got = model(input_ids=tokens).logits, loaded(input_ids=tokens).logits
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    reloaded = dict(loaded.named_parameters())
    for name, p in model.named_parameters():
        assert torch.equal(reloaded[name] == 0, p == 0), f"{name}: zeros changed in the round trip"


def check_adapter(model_or_config: Any, *, structures: Sequence[str] = DEFAULT_STRUCTURES,
                  methods: Sequence[str] | None = None, seed: int = 0) -> ContractReport:
    """Run the adapter contract (module docstring) on a tiny model.

    Args:
        model_or_config: a tiny causal LM, or a transformers config to build one from.
        structures: structures to prune with (``2:4`` for N:M).
        methods: methods to prune with (default: every registered method).
        seed: seed of the model's initialisation and of the tokens.

    Returns:
        What was checked and what was skipped (and why).
    """
    model = _as_model(model_or_config, seed)
    report = ContractReport(str(getattr(model.config, "model_type", "?")))
    adapter = adapter_for(model)
    tokens = random_tokens(model, 4, 16, seed=seed)
    modules = check_modules(model, adapter, tokens)
    report.modules, report.checks["modules"] = len(modules), "ok"
    report.roles = tuple(dict.fromkeys(r for pm in modules for r in pm.roles))
    check_propagation(model, adapter, tokens)
    report.checks["propagation"] = "ok"
    report.checks["couplings"] = check_couplings(model, adapter, tokens)
    report.checks["dead structures"] = check_dead(model, adapter, tokens, seed)
    if report.checks["couplings"] != "ok":
        structures = [s for s in structures if s != "dims"]
    pruned = row_col = None
    for method, structure, shots in _combinations(structures, methods):
        target = 0.8 if structure == "row-col" else 0.5
        candidate = copy.deepcopy(model)
        check_prune(candidate, method=method, structure=structure, target_size=target, shots=shots,
                    calibration=tokens)
        pruned = pruned or candidate
        if structure == "row-col":
            row_col = row_col or candidate
        report.checks[f"prune {method} {structure}"] = "ok"
    if pruned is not None:
        check_round_trip(pruned, tokens)
        report.checks["round trip"] = "ok"
    report.checks["compact export"] = check_compact_export(row_col, tokens)
    return report


@torch.no_grad()
def check_compact_export(pruned: nn.Module | None, tokens: Tensor) -> str:
    """Check 6: the compact form of a ``row-col`` result has the logits of the zeroed
    model and the parameter count of its plan; skipped for families it does not support."""
    from llm_surgeon.errors import UnsupportedArchitectureError
    from llm_surgeon.export import build_compact, compact_model
    from llm_surgeon.export.families import check_supported

    if pruned is None:
        return "skipped: no row-col result to export"
    try:
        check_supported(pruned.config)
    except UnsupportedArchitectureError as exc:
        return f"skipped: {exc}"
    plan = compact_model(pruned)
    small = build_compact(pruned, plan).eval()
    assert plan.num_parameters < plan.original_num_parameters, "the compact form removed nothing"
    assert sum(p.numel() for p in small.parameters()) == plan.num_parameters, "compact size differs from its plan"
    torch.testing.assert_close(small(input_ids=tokens).logits, pruned(input_ids=tokens).logits,
                               rtol=1e-4, atol=1e-4, msg=lambda m: f"compact logits differ ({m})")
    return "ok"
