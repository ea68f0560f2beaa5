"""Small helpers with no knowledge of models or pruning: dtypes, devices, files, progress."""

from llm_surgeon.util.progress import progress_bar
from llm_surgeon.util.torch_util import (
    MODEL_DTYPES,
    STATISTICS_DTYPES,
    model_device,
    statistics_dtype,
    torch_dtype,
    torch_threads,
)
from llm_surgeon.util.validators import fraction, one_of

__all__ = [
    "MODEL_DTYPES",
    "STATISTICS_DTYPES",
    "fraction",
    "model_device",
    "one_of",
    "progress_bar",
    "statistics_dtype",
    "torch_dtype",
    "torch_threads",
]
