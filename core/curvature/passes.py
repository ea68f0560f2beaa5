"""Forward/backward passes over calibration data that expose per-token statistics.

Curvature estimators need, for every prunable ``nn.Linear`` and every token ``n``:

* ``a_n``: the layer's input, with a trailing ``1`` when the layer has a bias, so that
  ``theta = [W | b]`` acts on it (``a: (T, d_in)``);
* ``g_n``: the gradient of the summed next-token cross-entropy of the batch with
  respect to the layer's output at position ``n`` (``g: (T, d_out)``).

Tokens are the positions that predict a next token, i.e. positions ``0..S-2`` of each
window of ``S`` tokens (the last position has no label and a zero gradient), so one
batch of ``B`` windows has ``T = B * (S - 1)`` tokens. With ``N`` tokens in all, the
token-level (empirical) Fisher of a layer is ``F = 1/N sum_n (g_n g_n^T) ⊗ (a_n a_n^T)``.

:func:`run_pass` runs one pass over the batches and hands these tensors to a
:class:`TokenObserver`, one module and one batch at a time; per-token tensors never
outlive their batch. Parameters are frozen during the pass (``requires_grad=False``),
so no weight gradient is ever formed: gradients flow from the loss to a leaf made of
the input embeddings, and tensor hooks on the Linear outputs read ``g``. The model is
left exactly as found (hooks removed, ``requires_grad`` and train/eval mode restored),
even when an error is raised.

With ``fisher_type="sampled"`` the labels are drawn from the model's own predictive
distribution, ``samples`` times per token (one backward pass each); each ``g`` is then
scaled by ``1/sqrt(samples)`` so that sums of ``g``-quadratics average over samples.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from functools import partial

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from llm_surgeon.curvature.options import FisherType
from llm_surgeon.curvature.tokens import GramCache, ModuleTokens, token_grads
from llm_surgeon.data.loss import next_token_logits
from llm_surgeon.model.adapters import PrunableModule
from llm_surgeon.util.faults import fault_point
from llm_surgeon.util.progress import progress_bar
from llm_surgeon.util.torch_util import model_device


class TokenObserver:
    """Receives per-token statistics; override the callbacks an estimator needs.

    Attributes:
        backward_inputs: whether :meth:`backward` reads ``tokens.a``; if not, a module's
            input is not kept alive until its gradient arrives (less memory in the pass).
    """

    backward_inputs: bool = True

    def forward(self, tokens: ModuleTokens) -> None:
        """Called once per module and batch, after the module's forward (``tokens.g`` is ``None``)."""

    def backward(self, tokens: ModuleTokens) -> None:
        """Called once per module, batch and label sample, with ``tokens.g`` set."""

    def end_batch(self) -> None:
        """Called after all callbacks of a batch."""


@attrs.define
class PassStats:
    """What one pass over the calibration data cost.

    Attributes:
        seconds: wall-clock time of the pass (forward, backward and observer callbacks).
        seconds_observer: part of ``seconds`` spent inside observer callbacks (on an
            accelerator this is launch time only, kernels run asynchronously).
        tokens: number of tokens ``N`` (label samples not counted).
        batches: number of batches.
    """

    seconds: float = 0.0
    seconds_observer: float = 0.0
    tokens: int = 0
    batches: int = 0


@attrs.frozen
class PassOptions:
    """How gradients are formed in a pass.

    Attributes:
        fisher_type: ``empirical`` (data labels) or ``sampled`` (model's own labels).
        samples: labels drawn per token for ``sampled``.
        dtype: dtype of the per-token tensors handed to observers.
        seed: seed of the label sampler.
    """

    fisher_type: FisherType = FisherType.EMPIRICAL
    samples: int = 1
    dtype: torch.dtype = torch.float32
    seed: int = 0


class _Pass:
    """Hooks of one pass; see :func:`run_pass`."""

    def __init__(self, modules: Sequence[PrunableModule], observer: TokenObserver,
                 options: PassOptions, gradients: bool) -> None:
        self.modules = modules
        self.observer = observer
        self.options = options
        self.gradients = gradients
        self.grams = GramCache()
        self.g_scale = 1.0
        self.seconds_observer = 0.0
        self.leaves: list[Tensor] = []
        self.batch_shape: tuple[int, int] = (0, 0)

    def embedding_hook(self, module: nn.Module, args: tuple, output: Tensor) -> Tensor:
        """Make the input embeddings a leaf that needs grad, the end point of backward."""
        leaf = output.detach().requires_grad_(True)
        self.leaves.append(leaf)
        return leaf

    def _timed(self, fn: Callable[[ModuleTokens], None], tokens: ModuleTokens) -> None:
        start = time.perf_counter()
        fn(tokens)
        self.seconds_observer += time.perf_counter() - start

    def forward_hook(self, index: int, module: nn.Module, args: tuple, output: Tensor) -> None:
        x = args[0].detach()
        pm = self.modules[index]
        tokens = ModuleTokens(index, x, pm.has_bias, self.options.dtype, self.batch_shape, self.grams)
        self._timed(self.observer.forward, tokens)
        del tokens
        if self.gradients and output.requires_grad:
            output.register_hook(partial(self.grad_hook, index, x if self.observer.backward_inputs else None))

    def grad_hook(self, index: int, x: Tensor | None, grad: Tensor) -> None:
        pm = self.modules[index]
        g = token_grads(grad.detach(), self.options.dtype, self.batch_shape, self.g_scale)
        tokens = ModuleTokens(index, x, pm.has_bias, self.options.dtype, self.batch_shape, None, g)
        self._timed(self.observer.backward, tokens)

    def end_batch(self) -> None:
        start = time.perf_counter()
        self.observer.end_batch()
        self.seconds_observer += time.perf_counter() - start
        self.grams.clear()


@contextlib.contextmanager
def frozen(model: nn.Module) -> Iterator[None]:
    """Eval mode and no parameter gradients inside; the model's own flags restored after."""
    requires_grad = [(p, p.requires_grad) for p in model.parameters()]
    was_training = model.training
    try:
        model.eval()
        for p, _ in requires_grad:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in requires_grad:
            p.requires_grad_(flag)
        model.train(was_training)


def _labels(logits: Tensor, batch: Tensor, options: PassOptions,
            generator: torch.Generator | None) -> list[Tensor]:
    """Next-token labels ``(T,)`` for each backward pass of a batch."""
    if options.fisher_type == FisherType.EMPIRICAL:
        return [batch[:, 1:].reshape(-1)]
    probs = torch.softmax(logits.detach(), dim=-1)
    return [torch.multinomial(probs, 1, generator=generator).squeeze(1) for _ in range(options.samples)]


def run_pass(
    model: nn.Module,
    modules: Sequence[PrunableModule],
    batches: Sequence[Tensor],
    observer: TokenObserver,
    *,
    gradients: bool,
    options: PassOptions | None = None,
    progress: bool = True,
    desc: str = "curvature pass",
) -> PassStats:
    """One pass over ``batches``, feeding ``observer`` with per-token statistics.

    Args:
        model: a causal LM whose ``forward(input_ids=...)`` returns ``.logits``
            ``(B, S, vocab)``; it is left exactly as found.
        modules: the Linear modules to observe (their index in this sequence is
            ``ModuleTokens.index``).
        batches: token ids ``(B, S)`` with ``S >= 2`` (moved to the model's device).
        observer: receives the statistics.
        gradients: also run backward passes (otherwise forward only, under ``no_grad``).
        options: Fisher type, label samples, statistics dtype and seed.
        progress: draw a progress bar over batches.
        desc: label of the progress bar.

    Returns:
        Timing and token counts of the pass.
    """
    options = options or PassOptions()
    if len(batches) == 0:
        raise ValueError("no calibration batches")
    device = model_device(model)
    state = _Pass(modules, observer, options, gradients)
    if options.fisher_type == FisherType.SAMPLED:
        state.g_scale = 1.0 / math.sqrt(options.samples)
    generator = None
    if gradients and options.fisher_type == FisherType.SAMPLED:
        generator = torch.Generator(device=device).manual_seed(options.seed)

    handles = [pm.module.register_forward_hook(partial(state.forward_hook, i))
               for i, pm in enumerate(modules)]
    if gradients:
        handles.append(model.get_input_embeddings().register_forward_hook(state.embedding_hook))
    stats = PassStats()
    start = time.perf_counter()
    try:
        with frozen(model):
            for batch in progress_bar(batches, total=len(batches), desc=desc, enabled=progress):
                fault_point("calibration-batch")
                if batch.ndim != 2 or batch.shape[1] < 2:
                    raise ValueError(f"calibration batches must be (batch, seqlen >= 2), got {tuple(batch.shape)}")
                batch = batch.to(device)
                state.batch_shape = (batch.shape[0], batch.shape[1])
                if gradients:
                    _forward_backward(model, batch, state, options, generator)
                else:
                    with torch.no_grad():
                        model(input_ids=batch, use_cache=False)
                state.end_batch()
                stats.tokens += batch.shape[0] * (batch.shape[1] - 1)
                stats.batches += 1
    finally:
        for handle in handles:
            handle.remove()
        state.grams.clear()
        state.leaves.clear()
    stats.seconds = time.perf_counter() - start
    stats.seconds_observer = state.seconds_observer
    return stats


def _forward_backward(model: nn.Module, batch: Tensor, state: _Pass, options: PassOptions,
                      generator: torch.Generator | None) -> None:
    """Forward one batch, then one backward pass per label sample (to the embedding leaf)."""
    with torch.enable_grad():  # also when the caller runs under ``torch.no_grad()``
        logits = model(input_ids=batch, use_cache=False).logits
        leaves, state.leaves = state.leaves, []
        logits = next_token_logits(logits)  # (B * (S - 1), vocab), bf16/fp16 -> fp32
        all_labels = _labels(logits, batch, options, generator)
        if len(all_labels) == 1:  # the logits are not needed by the backward pass: free them first
            loss = F.cross_entropy(logits, all_labels[0], reduction="sum")
            del logits
            torch.autograd.grad(loss, leaves)
            return
        for k, labels in enumerate(all_labels):
            loss = F.cross_entropy(logits, labels, reduction="sum")
            torch.autograd.grad(loss, leaves, retain_graph=k < len(all_labels) - 1)
