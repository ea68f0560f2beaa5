"""Text data: datasets and splits, token windows, the next-token loss and perplexity."""

from llm_surgeon.data.config import CalibrationConfig, DataConfig, EvalConfig
from llm_surgeon.data.loss import next_token_logits, next_token_loss
from llm_surgeon.data.perplexity import perplexity, window_losses
from llm_surgeon.data.text import dataset_name, load_text, split_name
from llm_surgeon.data.windows import calibration_windows, eval_windows, split_windows, tokenize

__all__ = [
    "CalibrationConfig",
    "DataConfig",
    "EvalConfig",
    "calibration_windows",
    "dataset_name",
    "eval_windows",
    "load_text",
    "next_token_logits",
    "next_token_loss",
    "perplexity",
    "split_name",
    "split_windows",
    "tokenize",
    "window_losses",
]
