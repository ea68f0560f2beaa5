"""Layer-by-layer propagation of calibration data through a model that is being pruned.

Layer-wise pruners (SparseGPT, Wanda) prune one decoder layer at a time from statistics
of the inputs of its Linear modules, and feed the *pruned* layer's outputs to the next
layer, so that every layer is pruned to reconstruct the signal it actually receives.

The driver is generic: it only uses the architecture adapter (``decoder_layers``,
``layer_modules``, ``sequential_groups``). The inputs of the first decoder layer (hidden
states and every keyword argument the model passes it: attention mask, position ids,
rotary position embeddings...) are caught with a forward pre-hook, so no model family
needs its own copy of the loop. Models that call later layers with other arguments
(Gemma 3: sliding-window and global layers get their own masks and rotary embeddings)
have every layer's arguments caught too.

Usage::

    def make_stat(d_in):            # one statistic per distinct module input
        return GramStatistic(d_in)

    def prune(pm, stat):            # called once per module, after its group's pass
        ...

    propagate(model, adapter, batches, make_stat=make_stat, prune=prune)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import attrs
import torch
from torch import Tensor, nn

from llm_surgeon.model.adapters import ArchitectureAdapter, PrunableModule

log = logging.getLogger(__name__)


class InputStatistic(Protocol):
    """Accumulates a statistic of a Linear module's inputs over calibration tokens."""

    def add_batch(self, x: Tensor) -> None:
        """Add the inputs ``x: (tokens, d_in)`` of one calibration batch."""


class _Caught(Exception):
    """Raised by the pre-hook to stop the forward pass at the first decoder layer."""


@attrs.define(eq=False)
class LayerInputs:
    """Inputs of the decoder layers for every calibration batch.

    Attributes:
        hidden: per batch, the hidden states ``(batch, seqlen, d_model)`` entering the
            current layer.
        args: per batch, further positional arguments of the first layer's call.
        kwargs: per batch, keyword arguments of the first layer's call (attention mask,
            position ids, position embeddings, ``use_cache``...).
        per_layer: ``None`` when every layer is called with the first layer's arguments;
            otherwise, per layer and batch, that layer's ``(args, kwargs)`` (Gemma 3
            passes sliding-window layers another mask and rotary embedding than global ones).
    """

    hidden: list[Tensor]
    args: list[tuple[Any, ...]]
    kwargs: list[dict[str, Any]]
    per_layer: list[list[tuple[tuple[Any, ...], dict[str, Any]]]] | None = None

    def __len__(self) -> int:
        return len(self.hidden)

    def calls(self, index: int) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
        """Per batch, the ``(args, kwargs)`` that layer ``index`` is called with."""
        if self.per_layer is None:
            return list(zip(self.args, self.kwargs, strict=True))
        return self.per_layer[index]


def _same(a: Any, b: Any) -> bool:
    """Whether two layer-call arguments are the same (tensors: same object or equal values)."""
    if a is b:
        return True
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        return (isinstance(a, Tensor) and isinstance(b, Tensor) and a.shape == b.shape
                and a.dtype == b.dtype and bool(torch.equal(a, b)))
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - objects without a usable ==
        return False


def _split_call(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Tensor, tuple[Any, ...], dict[str, Any]]:
    """``(hidden, other args, kwargs)`` of a decoder-layer call, with ``use_cache`` off."""
    kwargs = dict(kwargs)
    if args:
        hidden, rest = args[0], tuple(args[1:])
    else:
        hidden, rest = kwargs.pop("hidden_states"), ()
    kwargs["use_cache"] = False
    return hidden, rest, kwargs


@torch.no_grad()
def capture_layer_inputs(
    model: nn.Module, adapter: ArchitectureAdapter, batches: Sequence[Tensor]
) -> LayerInputs:
    """Run the model up to its first decoder layer and keep that layer's inputs.

    The first batch runs up to the last layer, to see whether later layers get other
    arguments (masks, rotary embeddings) than the first; only then do all batches run
    that far, and the arguments of every layer are kept.

    Args:
        model: the causal LM (its parameters' device is used for the batches).
        adapter: the model's architecture adapter.
        batches: token ids, each ``(batch, seqlen)``.

    Returns:
        The decoder layers' inputs for every batch (on the model's device).
    """
    layers = adapter.decoder_layers(model)
    device = next(model.parameters()).device
    caught: list[list[tuple[tuple[Any, ...], dict[str, Any]]]] = [[] for _ in layers]
    stop_after = [len(layers) - 1]  # index of the last layer whose call is recorded

    def pre_hook(index: int):
        def hook(_module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]):
            if index > stop_after[0]:
                raise _Caught
            hidden, rest, kw = _split_call(args, kwargs)
            caught[index].append((rest, kw) if index else ((hidden, *rest), kw))
            if index == stop_after[0]:
                raise _Caught

        return hook

    handles = [layer.register_forward_pre_hook(pre_hook(i), with_kwargs=True)
               for i, layer in enumerate(layers)]
    try:
        for b, batch in enumerate(batches):
            try:
                model(input_ids=batch.to(device), use_cache=False)
            except _Caught:
                pass
            else:  # pragma: no cover - the hook always fires
                raise RuntimeError("the decoder layers were never called")
            if b == 0 and all(_same(c[0], caught[0][0][1:]) and _same(k, caught[0][0][1])
                              for calls in caught[1:] for c in calls for k in [c[1]]):
                stop_after[0] = 0
                for calls in caught[1:]:
                    calls.clear()
    finally:
        for handle in handles:
            handle.remove()

    inputs = LayerInputs([], [], [])
    for (hidden, *rest), kwargs in caught[0]:
        inputs.hidden.append(hidden)
        inputs.args.append(tuple(rest))
        inputs.kwargs.append(kwargs)
    if stop_after[0] > 0:
        inputs.per_layer = [list(zip(inputs.args, inputs.kwargs, strict=True)), *caught[1:]]
    return inputs


def _hidden_of(output: Any) -> Tensor:
    """The hidden states of a decoder layer's output (a tensor, or a tuple starting with it)."""
    return output if isinstance(output, Tensor) else output[0]


@torch.no_grad()
def run_layer(layer: nn.Module, inputs: LayerInputs, index: int = 0) -> list[Tensor]:
    """Outputs of layer ``index`` for every batch of ``inputs``, each ``(batch, seqlen, d_model)``."""
    return [
        _hidden_of(layer(h, *a, **k))
        for h, (a, k) in zip(inputs.hidden, inputs.calls(index), strict=True)
    ]


class _Collector:
    """Forward hooks that feed each module's inputs to a statistic, shared between
    modules that read the very same input tensor (``q``/``k``/``v``, ``gate``/``up``)."""

    def __init__(self, modules: Sequence[PrunableModule], make_stat: Callable[[int], InputStatistic]):
        self.make_stat = make_stat
        self.stats: dict[str, InputStatistic] = {}
        self._seen: list[tuple[Tensor, InputStatistic]] = []  # this batch; keeps inputs alive
        self._fed: set[int] = set()
        self._handles = [pm.module.register_forward_hook(self._hook(pm.name)) for pm in modules]

    def _hook(self, name: str):
        def hook(_module: nn.Module, args: tuple[Any, ...], _output: Any) -> None:
            x = args[0]
            stat = self.stats.get(name)
            if stat is None:
                stat = next((s for t, s in self._seen if t is x), None)
                if stat is None:
                    stat = self.make_stat(x.shape[-1])
                self.stats[name] = stat
            if id(stat) not in self._fed:
                stat.add_batch(x.detach().reshape(-1, x.shape[-1]))
                self._fed.add(id(stat))
            self._seen.append((x, stat))

        return hook

    def next_batch(self) -> None:
        """Forget the inputs of the previous batch."""
        self._seen.clear()
        self._fed.clear()

    def remove(self) -> None:
        """Remove the hooks."""
        for handle in self._handles:
            handle.remove()
        self.next_batch()


def layer_groups(
    adapter: ArchitectureAdapter, modules: Sequence[PrunableModule], true_sequential: bool
) -> list[list[PrunableModule]]:
    """The modules of one layer in the groups that are pruned one after the other.

    Without ``true_sequential`` every module of the layer forms one group: all see the
    layer's input as produced by the already-pruned previous layers (as in the original
    SparseGPT and Wanda). With it, the adapter's ``sequential_groups`` are pruned in turn,
    each group seeing the outputs of the already-pruned groups before it; roles in no
    group come last.
    """
    if not true_sequential or not adapter.sequential_groups:
        return [list(modules)] if modules else []
    by_role = {pm.role: pm for pm in modules}
    groups = []
    placed: set[str] = set()
    for roles in adapter.sequential_groups:
        group = [by_role[r] for r in roles if r in by_role]
        placed.update(roles)
        if group:
            groups.append(group)
    rest = [pm for pm in modules if pm.role not in placed]
    if rest:
        groups.append(rest)
    return groups


@torch.no_grad()
def propagate(
    model: nn.Module,
    adapter: ArchitectureAdapter,
    batches: Sequence[Tensor],
    *,
    make_stat: Callable[[int], InputStatistic],
    prune: Callable[[PrunableModule, InputStatistic], None],
    include: Callable[[PrunableModule], bool] | None = None,
    true_sequential: bool = False,
    progress: Callable[[Iterable[Any], int], Iterable[Any]] | None = None,
) -> int:
    """Prune a model layer by layer, propagating calibration inputs through pruned layers.

    For each decoder layer: for each group of its modules (see :func:`layer_groups`),
    run the layer on every calibration batch with hooks that feed each module's input
    ``(tokens, d_in)`` to a statistic made by ``make_stat(d_in)`` (one per distinct
    input tensor), then call ``prune(module, statistic)`` for the group's modules. The
    pruned layer's outputs become the next layer's inputs.

    Args:
        model: the causal LM, in eval mode.
        adapter: its architecture adapter.
        batches: calibration token ids, each ``(batch, seqlen)``.
        make_stat: builds an empty statistic for inputs of width ``d_in``.
        prune: prunes one module (in place) from its statistic.
        include: which modules to prune (default: all the adapter lists).
        true_sequential: prune the adapter's sequential groups one after the other.
        progress: optional wrapper ``progress(iterable, total)`` for a progress bar.

    Returns:
        The number of layer forward passes over the calibration data.
    """
    layers = adapter.decoder_layers(model)
    prefix = adapter.layers_prefix(model) + "."
    inputs = capture_layer_inputs(model, adapter, batches)
    passes = 0
    indices: Iterable[int] = range(len(layers))
    if progress is not None:
        indices = progress(indices, len(layers))
    for index in indices:
        layer = layers[index]
        modules = [pm for pm in adapter.layer_modules(layer, index, prefix)
                   if include is None or include(pm)]
        for group in layer_groups(adapter, modules, true_sequential):
            collector = _Collector(group, make_stat)
            try:
                for h, (a, k) in zip(inputs.hidden, inputs.calls(index), strict=True):
                    layer(h, *a, **k)
                    collector.next_batch()
            finally:
                collector.remove()
            passes += 1
            for pm in group:
                stat = collector.stats.get(pm.name)
                if stat is None:
                    log.warning("module %s was not called during the forward pass; skipped", pm.name)
                    continue
                prune(pm, stat)
            del collector
        inputs.hidden = run_layer(layer, inputs, index)
        passes += 1
    return passes
