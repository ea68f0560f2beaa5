"""The estimator contract, and the base that holds what every pass-based estimator repeats.

An estimator measures, for every prunable Linear, a curvature of the loss with respect
to ``theta = [W | b]``. Most do so from sums over calibration tokens of products of
per-token vectors (``sum_n a_n a_n^T``, ``sum_n g_n g_n^T``...): :class:`MomentEstimator`
declares those sums as :class:`Moment` s, runs one pass, turns the sums into means (freeing
each sum as soon as it is read), checks them for NaN and infinity, and returns the result.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
import torch
from torch import Tensor, nn

from llm_surgeon.curvature.options import GradientConfig, StatisticsConfig, accumulation_dtype
from llm_surgeon.curvature.passes import PassOptions, PassStats, TokenObserver, run_pass
from llm_surgeon.curvature.symmetric import PackedUpper, gram_upper
from llm_surgeon.curvature.tokens import ModuleTokens
from llm_surgeon.curvature.types import Curvature
from llm_surgeon.errors import NumericalError
from llm_surgeon.model.adapters import PrunableModule
from llm_surgeon.util.torch_util import model_device


@attrs.define
class CurvatureResult:
    """What an estimator returns for one shot.

    Attributes:
        curvatures: module name -> curvature.
        seconds_passes: time in forward/backward passes over calibration data.
        seconds_algebra: time in factor algebra (normalisation, power iteration maths...).
        passes: number of passes over the calibration data.
        info: estimator-specific diagnostics (e.g. sigma values, warm start).
    """

    curvatures: dict[str, Curvature]
    seconds_passes: float = 0.0
    seconds_algebra: float = 0.0
    passes: int = 0
    info: dict[str, Any] = attrs.field(factory=dict)

    @property
    def nbytes(self) -> int:
        """Total memory of all curvatures (a tensor shared by several modules counts once)."""
        seen: set[int] = set()
        total = 0
        for c in self.curvatures.values():
            tensors = c.tensors()
            if not tensors:
                total += c.nbytes
            for t in tensors:
                if t.data_ptr() not in seen:
                    seen.add(t.data_ptr())
                    total += t.numel() * t.element_size()
        return total


class CurvatureEstimator(ABC):
    """Measures the curvature of every prunable module on calibration data.

    Instances hold per-run state and are created fresh for each run by the registry.

    Attributes:
        needs_gradients: whether the estimator runs backward passes.
        uses_previous: whether :meth:`estimate` wants the previous shot's curvatures
            (a warm start); the shot loop then keeps them between shots.
    """

    needs_gradients: bool = True
    uses_previous: bool = False

    @abstractmethod
    def estimate(
        self,
        model: nn.Module,
        modules: Sequence[PrunableModule],
        batches: Sequence[Tensor],
        *,
        previous: Mapping[str, Curvature] | None = None,
        progress: bool = True,
    ) -> CurvatureResult:
        """Estimate the curvature of each module.

        Args:
            model: the (possibly already pruned) causal LM, in eval mode.
            modules: the prunable modules to measure.
            batches: token-id tensors ``(batch, seqlen)``; the loss is next-token
                cross-entropy (summed per token: one ``g`` per token).
            previous: last shot's curvatures by module name (warm start), if any.
            progress: show a progress bar over batches.
        """


def layer_dims(pm: PrunableModule) -> tuple[int, int]:
    """``(d_out, d_in)`` of ``theta = [W | b]``, ``d_in`` counting the bias column."""
    d_out, d_in = pm.shape
    return d_out, d_in + int(pm.has_bias)


def check_finite(name: str, what: str, *tensors: Tensor | None) -> None:
    """Raise :class:`NumericalError` naming module ``name`` if a tensor has a NaN or infinity."""
    for t in tensors:
        if t is not None and not bool(torch.isfinite(t).all()):
            raise NumericalError(
                f"non-finite {what} for module {name} (NaN or infinity in the calibration "
                "statistics; try --dtype float64 for the model or the curvature, or check the data)"
            )


class ModuleSums:
    """Per-module running sums kept on the statistics device.

    A symmetric sum (``x^T x``, or a ready term marked ``upper``) keeps only its upper
    block triangle, packed (:class:`~llm_surgeon.curvature.symmetric.PackedUpper`): about
    half the work and 60% of the memory of the full matrix. ``sums[i]`` is then that
    packed flat tensor (a sum over ranks of it is still the packed sum); :meth:`pop_mean`
    unpacks and mirrors it once.

    Args:
        n: number of modules.
        device: where the sums live.

    Attributes:
        sums: per module, its running sum (``None`` until something is added).
        upper: per module, whether its sum is a packed symmetric one.
    """

    def __init__(self, n: int, device: torch.device) -> None:
        self.sums: list[Tensor | None] = [None] * n
        self.upper: list[bool] = [False] * n
        self.device = device
        self._packed: dict[int, PackedUpper] = {}

    def _start(self, index: int, upper: bool) -> Tensor | None:
        """The current sum of ``index``, after checking that it is of the same kind."""
        total = self.sums[index]
        if total is None:
            self.upper[index] = upper
        elif self.upper[index] != upper:
            raise ValueError(f"module {index}: symmetric (upper-triangle) and general terms "
                             "added to the same sum")
        return total

    def _pack(self, index: int, d: int, dtype: torch.dtype) -> PackedUpper:
        packed = self._packed.get(index)
        if packed is None:
            packed = self._packed[index] = PackedUpper(d, dtype, self.device)
            self.sums[index] = packed.flat
        return packed

    def add(self, index: int, value: Tensor, *, upper: bool = False) -> None:
        """Add ``value`` (computed anywhere) to the sum of module ``index``.

        Args:
            index: the module.
            value: the term.
            upper: ``value`` is symmetric ``(d, d)`` and only its upper triangle is valid.
        """
        total = self._start(index, upper)
        if upper:
            self._pack(index, value.shape[0], value.dtype).add_(value)
        elif total is None:
            self.sums[index] = value.to(self.device, copy=True)
        else:
            total.add_(value.to(self.device))

    def add_products(self, index: int, x: Tensor, y: Tensor) -> None:
        """Add ``x^T y`` (``x: (T, m)``, ``y: (T, n)``), in place where the sum lives with ``x``.

        When ``y is x`` the sum is symmetric and only its upper block triangle is kept.
        """
        if y is x:
            self._start(index, True)
            packed = self._pack(index, x.shape[1], x.dtype)
            if packed.flat.device == x.device:
                packed.add_gram_(x)
            else:
                packed.add_(gram_upper(x))
            return
        total = self._start(index, False)
        if total is None:
            self.sums[index] = (x.T @ y).to(self.device)
        elif total.device == x.device and total.dtype == x.dtype:
            total.addmm_(x.T, y)
        else:
            total.add_((x.T @ y).to(self.device))

    def pop_mean(self, index: int, count: int, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
        """The sum of module ``index`` divided by ``count``, forgetting the sum.

        Zeros of ``shape`` if nothing was added (a module the pass never reached). A
        general sum's mean reuses its memory; a packed one is unpacked and mirrored.
        """
        total, self.sums[index] = self.sums[index], None
        packed = self._packed.pop(index, None)
        if total is None:
            return torch.zeros(shape, dtype=dtype, device=self.device)
        if packed is not None:
            del total
            total = packed.full()
        return total.div_(max(count, 1))


@attrs.frozen
class Moment:
    """A sum over tokens ``sum_n x_n^T y_n`` per module, gathered in one pass.

    Attributes:
        name: key of the mean handed to :meth:`MomentEstimator.curvature`.
        backward: read in the backward callbacks (needs ``g``), else in the forward ones.
        term: the batch's contribution: ``(x, y)`` whose product ``x^T y`` is added (a
            symmetric one, one triangle only, when ``y is x``), or a ready ``(m, n)`` sum
            (e.g. the input Gram matrix shared by modules).
        shape: the shape of the mean for a module (for modules the pass never reached).
        upper: a ready term is symmetric and holds only its upper triangle.
        uses_inputs: ``term`` reads ``tokens.a`` (a backward moment that does not lets the
            pass free module inputs before their gradients arrive).
    """

    name: str
    backward: bool
    term: Callable[[ModuleTokens], tuple[Tensor, Tensor] | Tensor]
    shape: Callable[[PrunableModule], tuple[int, ...]]
    upper: bool = False
    uses_inputs: bool = True


#: The input second moment ``sum_n a_n a_n^T``, ``(d_in, d_in)``: the upper triangle of the
#: Gram matrix shared by modules that read the same input, mirrored in the mean.
INPUT_MOMENT = Moment("A", False, lambda t: t.gram(upper=True), lambda pm: (layer_dims(pm)[1],) * 2,
                      upper=True)
#: The output-gradient second moment ``sum_n g_n g_n^T``, ``(d_out, d_out)``.
GRADIENT_MOMENT = Moment("G", True, lambda t: (t.g, t.g), lambda pm: (layer_dims(pm)[0],) * 2,
                         uses_inputs=False)


class _MomentObserver(TokenObserver):
    def __init__(self, moments: Sequence[Moment], n: int, device: torch.device) -> None:
        self.moments = tuple(moments)
        self.sums = {m.name: ModuleSums(n, device) for m in moments}
        self.backward_inputs = any(m.backward and m.uses_inputs for m in self.moments)

    def _feed(self, tokens: ModuleTokens, backward: bool) -> None:
        for m in self.moments:
            if m.backward == backward:
                term = m.term(tokens)
                if isinstance(term, Tensor):
                    self.sums[m.name].add(tokens.index, term, upper=m.upper)
                else:
                    self.sums[m.name].add_products(tokens.index, *term)

    def forward(self, tokens: ModuleTokens) -> None:
        self._feed(tokens, backward=False)

    def backward(self, tokens: ModuleTokens) -> None:
        self._feed(tokens, backward=True)


def pass_options(config: StatisticsConfig) -> PassOptions:
    """The :class:`~llm_surgeon.curvature.passes.PassOptions` of an estimator config."""
    dtype = accumulation_dtype(config)
    if isinstance(config, GradientConfig):
        return PassOptions(fisher_type=config.fisher_type, samples=config.samples, dtype=dtype,
                           seed=config.seed)
    return PassOptions(dtype=dtype)


def statistics_device(config: StatisticsConfig, model: nn.Module) -> torch.device:
    """Where the statistics of ``config`` live: its ``device``, else with the model."""
    return torch.device(config.device) if config.device is not None else model_device(model)


def moment_means(
    model: nn.Module,
    modules: Sequence[PrunableModule],
    batches: Sequence[Tensor],
    moments: Sequence[Moment],
    config: StatisticsConfig,
    *,
    progress: bool,
    desc: str,
) -> tuple[list[dict[str, Tensor]], PassStats, float]:
    """One pass gathering ``moments`` for every module; their means, checked for finiteness.

    Returns:
        Per module (in the order of ``modules``) moment name -> mean; the pass's
        statistics; the seconds spent turning sums into means.
    """
    options = pass_options(config)
    observer = _MomentObserver(moments, len(modules), statistics_device(config, model))
    stats = run_pass(model, modules, batches, observer, gradients=any(m.backward for m in moments),
                     options=options, progress=progress, desc=desc)
    start = time.perf_counter()
    means: list[dict[str, Tensor]] = []
    for i, pm in enumerate(modules):
        mine = {m.name: observer.sums[m.name].pop_mean(i, stats.tokens, m.shape(pm), options.dtype)
                for m in moments}
        check_finite(pm.name, desc + " statistics", *mine.values())
        if means:
            _share_equal(mine, means[-1])
        means.append(mine)
    return means, stats, time.perf_counter() - start


def _share_equal(mine: dict[str, Tensor], previous: dict[str, Tensor]) -> None:
    """Reuse the previous module's mean where this one is bitwise equal (q/k/v and gate/up
    read the same inputs, so their input moments are the same sums), freeing the copy."""
    for name, mean in mine.items():
        other = previous.get(name)
        if other is not None and other is not mean and other.shape == mean.shape and torch.equal(other, mean):
            mine[name] = other


class MomentEstimator(CurvatureEstimator):
    """An estimator made of one pass of :class:`Moment` s and a per-module formula.

    Subclasses set ``moments``, ``label`` (progress bars and messages) and
    ``config_class`` and implement :meth:`curvature`.

    Args:
        config: the estimator's options (default: ``config_class()``).
    """

    moments: tuple[Moment, ...] = ()
    label: str = "curvature"
    config_class: type[StatisticsConfig] = StatisticsConfig

    def __init__(self, config: StatisticsConfig | None = None) -> None:
        self.config = config if config is not None else self.config_class()

    @property
    def needs_gradients(self) -> bool:  # type: ignore[override]
        return any(m.backward for m in self.moments)

    @abstractmethod
    def curvature(self, pm: PrunableModule, means: dict[str, Tensor]) -> Curvature:
        """The curvature of one module from the means of its moments."""

    def estimate(
        self,
        model: nn.Module,
        modules: Sequence[PrunableModule],
        batches: Sequence[Tensor],
        *,
        previous: Mapping[str, Curvature] | None = None,
        progress: bool = True,
    ) -> CurvatureResult:
        """One pass; one curvature per module from :meth:`curvature`."""
        means, stats, seconds = moment_means(model, modules, batches, self.moments, self.config,
                                             progress=progress, desc=self.label)
        start = time.perf_counter()
        curvatures = {pm.name: self.curvature(pm, m) for pm, m in zip(modules, means, strict=True)}
        return CurvatureResult(
            curvatures=curvatures,
            seconds_passes=stats.seconds,
            seconds_algebra=seconds + time.perf_counter() - start,
            passes=1,
            info={"tokens": stats.tokens, "seconds_statistics": stats.seconds_observer},
        )
