"""First-order corrections: LoRA phases between shots, absorbed into the pruned weights."""

from llm_surgeon.methods.lora.masking import LiveConstraint, dropped_delta_fraction
from llm_surgeon.methods.lora.settings import LoraSettings
from llm_surgeon.methods.lora.training import finetune, holdout_split, lm_loss

__all__ = ["LiveConstraint", "LoraSettings", "dropped_delta_fraction", "finetune", "lm_loss", "holdout_split"]
