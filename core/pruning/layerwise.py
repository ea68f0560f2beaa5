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

import torch
from torch import Tensor, nn

from llm_surgeon.model.adapters import ArchitectureAdapter, PrunableModule
from llm_surgeon.pruning.layer_inputs import LayerInputs, capture_layer_inputs, run_layer

__all__ = ["InputStatistic", "LayerInputs", "capture_layer_inputs", "layer_groups", "propagate", "run_layer"]

log = logging.getLogger(__name__)


class InputStatistic(Protocol):
    """Accumulates a statistic of a Linear module's inputs over calibration tokens."""

    def add_batch(self, x: Tensor) -> None:
        """Add the inputs ``x: (tokens, d_in)`` of one calibration batch."""


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
