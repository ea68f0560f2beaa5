"""Text data: datasets and splits, token windows, the next-token loss and perplexity."""

from llm_surgeon.data.config import (
    CalibrationConfig,
    ChatConfig,
    DataConfig,
    EvalConfig,
    FidelityConfig,
)
from llm_surgeon.data.conversations import load_conversations, render
from llm_surgeon.data.fidelity import measure_fidelity
from llm_surgeon.data.generation import self_generate
from llm_surgeon.data.loss import next_token_logits, next_token_loss
from llm_surgeon.data.perplexity import perplexity, window_losses
from llm_surgeon.data.reference import build_reference, load_reference
from llm_surgeon.data.text import dataset_name, load_text, split_name
from llm_surgeon.data.windows import (
    calibration_windows,
    conversation_windows,
    eval_windows,
    split_windows,
    tokenize,
)

__all__ = [
    "CalibrationConfig",
    "ChatConfig",
    "DataConfig",
    "EvalConfig",
    "FidelityConfig",
    "build_reference",
    "calibration_windows",
    "conversation_windows",
    "dataset_name",
    "eval_windows",
    "load_conversations",
    "load_reference",
    "load_text",
    "measure_fidelity",
    "next_token_logits",
    "next_token_loss",
    "perplexity",
    "render",
    "self_generate",
    "split_name",
    "split_windows",
    "tokenize",
    "window_losses",
]
