"""Options shared by estimators that run passes over calibration data."""

from __future__ import annotations

from enum import Enum

import attrs
from attrs import validators as v

from llm_surgeon.util.torch_util import STATISTICS_DTYPES, statistics_dtype, torch_dtype


class FisherType(str, Enum):
    """Where the labels of the Fisher come from."""

    EMPIRICAL = "empirical"  #: labels from the data
    SAMPLED = "sampled"  #: labels sampled from the model's predictive distribution


def _fisher_type(value: str | FisherType) -> FisherType:
    try:
        return FisherType(value)
    except ValueError:
        valid = ", ".join(t.value for t in FisherType)
        raise ValueError(f"fisher_type must be one of {valid}, got {value!r}") from None


@attrs.frozen
class StatisticsConfig:
    """Options of every estimator that runs passes over the data.

    Attributes:
        dtype: accumulation dtype of the statistics, ``float32`` or ``float64``.
        device: where the statistics and factors live (``None``: the run's
            ``curvature_device``, else the model's device); may be ``cpu`` while the model
            runs on an accelerator.
    """

    dtype: str = attrs.field(default="float32", validator=statistics_dtype)
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
    samples: int = attrs.field(default=1, validator=v.ge(1))
    seed: int = 0


def accumulation_dtype(config: StatisticsConfig):
    """The :class:`torch.dtype` of ``config.dtype``."""
    return torch_dtype(config.dtype, STATISTICS_DTYPES)
