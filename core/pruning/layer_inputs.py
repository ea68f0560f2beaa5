"""The inputs of a model's decoder layers, caught once and replayed layer by layer.

Layer-wise pruning runs one decoder layer at a time on its calibration inputs. The
inputs of the first decoder layer (hidden states and every argument the model passes
it: attention mask, position ids, rotary position embeddings...) are caught with a
forward pre-hook. Models that call later layers with other arguments (Gemma 3:
sliding-window and global layers get their own masks and rotary embeddings) have every
layer's arguments caught too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import torch
from torch import Tensor, nn

from llm_surgeon.model.adapters import ArchitectureAdapter


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
