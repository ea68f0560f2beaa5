"""Options and helpers shared by the built-in curvature estimators."""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import torch
from torch import Tensor, nn

from llm_surgeon.adapters import PrunableModule
from llm_surgeon.config import FisherType
from llm_surgeon.errors import NumericalError
from llm_surgeon.stats import PassOptions

#: Accumulation dtypes users may choose.
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _fisher_type(value: str | FisherType) -> FisherType:
    try:
        return FisherType(value)
    except ValueError:
        valid = ", ".join(t.value for t in FisherType)
        raise ValueError(f"fisher_type must be one of {valid}, got {value!r}") from None


def _positive(instance: object, attribute: attrs.Attribute, value: int) -> None:
    if value < 1:
        raise ValueError(f"{attribute.name} must be >= 1, got {value}")


def _dtype(instance: object, attribute: attrs.Attribute, value: str) -> None:
    if value not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {value!r}")


@attrs.frozen
class StatisticsConfig:
    """Options of every estimator that runs passes over the data.

    Attributes:
        dtype: accumulation dtype of the statistics, ``float32`` or ``float64``.
        device: where the factors live (``None``: the model's device); may be ``cpu``
            while the model runs on an accelerator.
    """

    dtype: str = attrs.field(default="float32", validator=_dtype)
    device: str | None = None


@attrs.frozen
class GradientConfig(StatisticsConfig):
    """Options of every estimator that needs gradients of the loss.

    Attributes:
        fisher_type: ``empirical`` (data labels) or ``sampled`` (labels drawn from the
            model's predictive distribution).
        samples: labels drawn per token when ``fisher_type`` is ``sampled``.
        seed: seed of the label sampler.
    """

    fisher_type: FisherType = attrs.field(default=FisherType.EMPIRICAL, converter=_fisher_type)
    samples: int = attrs.field(default=1, validator=_positive)
    seed: int = 0


def pass_options(config: StatisticsConfig) -> PassOptions:
    """The :class:`~llm_surgeon.stats.PassOptions` of an estimator config."""
    if isinstance(config, GradientConfig):
        return PassOptions(fisher_type=config.fisher_type, samples=config.samples,
                           dtype=DTYPES[config.dtype], seed=config.seed)
    return PassOptions(dtype=DTYPES[config.dtype])


def factor_device(config: StatisticsConfig, model: nn.Module) -> torch.device:
    """Where the factors of ``config`` live."""
    if config.device is not None:
        return torch.device(config.device)
    return next(model.parameters()).device


def layer_dims(pm: PrunableModule) -> tuple[int, int]:
    """``(d_out, d_in)`` of ``theta = [W | b]``, ``d_in`` counting the bias column."""
    d_out, d_in = pm.shape
    return d_out, d_in + int(pm.has_bias)


def check_finite(name: str, what: str, *tensors: Tensor | None) -> None:
    """Raise :class:`NumericalError` naming ``name`` if any tensor has a NaN or infinity."""
    for t in tensors:
        if t is not None and not bool(torch.isfinite(t).all()):
            raise NumericalError(
                f"non-finite {what} for module {name} (NaN or infinity in the calibration "
                "statistics; try --dtype float64 for the model or the curvature, or check the data)"
            )


class SumAccumulator:
    """Per-module running sums that live on the factor device.

    Args:
        n: number of modules.
        device: where the sums are kept.
    """

    def __init__(self, n: int, device: torch.device) -> None:
        self.sums: list[Tensor | None] = [None] * n
        self.device = device

    def add(self, index: int, value: Tensor) -> None:
        """Add ``value`` (computed anywhere) to the sum of module ``index``."""
        value = value.to(self.device)
        if self.sums[index] is None:
            self.sums[index] = value.clone()
        else:
            self.sums[index].add_(value)

    def add_products(self, index: int, x: Tensor, y: Tensor) -> None:
        """Add ``x^T y`` (``x: (T, m)``, ``y: (T, n)``) to the sum of module ``index``.

        Accumulates in place with ``addmm_`` when the sum lives where ``x`` does.
        """
        total = self.sums[index]
        if total is None:
            self.sums[index] = (x.T @ y).to(self.device)
        elif total.device == x.device and total.dtype == x.dtype:
            total.addmm_(x.T, y)
        else:
            total.add_((x.T @ y).to(self.device))

    def mean(self, index: int, count: int, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
        """The sum divided by ``count`` (zeros of ``shape`` if nothing was added)."""
        total = self.sums[index]
        if total is None:
            return torch.zeros(shape, dtype=dtype, device=self.device)
        return total / max(count, 1)


def names(modules: Sequence[PrunableModule]) -> list[str]:
    """Qualified names of ``modules``."""
    return [pm.name for pm in modules]
