"""Compact folders: write them, export a zeroed folder to one, load either kind.

A compact folder is a standard Hugging Face folder (``config.json``, ``model.safetensors``,
tokenizer files). A uniform result has the original architecture's config and no code; any
other has a ``surgeon_*`` config, the modeling files of :mod:`llm_surgeon.export.modeling`
copied next to the weights and an ``auto_map`` pointing at them, so that
``AutoModelForCausalLM.from_pretrained(DIR, trust_remote_code=True)`` loads it without
llm-surgeon. :func:`load` loads both kinds with the library's own classes (no remote code).
``export.json`` holds the plan (:meth:`CompactPlan.to_dict`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from torch import nn

from llm_surgeon.export.compact import build_compact, compact_model
from llm_surgeon.export.families import COMPACT_MODELS, check_supported
from llm_surgeon.export.plan import CompactPlan
from llm_surgeon.model import loading
from llm_surgeon.model.loading import load_model_config, save_model, strip_quantization
from llm_surgeon.util.io import atomic_output, check_output_folder, write_json

log = logging.getLogger(__name__)

#: The plan of a compact folder, next to its weights.
PLAN_FILE = "export.json"


def register_auto_classes() -> None:
    """Register the ``surgeon_*`` configs and models with transformers' Auto classes.

    Afterwards ``AutoConfig`` / ``AutoModelForCausalLM`` (and ``load_model``) load compact
    folders with the library's classes, without ``trust_remote_code``.
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    for model_type, model_cls in COMPACT_MODELS.items():
        AutoConfig.register(model_type, model_cls.config_class, exist_ok=True)
        AutoModelForCausalLM.register(model_cls.config_class, model_cls, exist_ok=True)


def save_compact(model: nn.Module, tokenizer: Any, folder: str | Path,
                 source: dict[str, Any] | None = None) -> CompactPlan:
    """Write the compact model of ``model`` (and ``tokenizer``, if given) to ``folder``.

    Args:
        model: a structured-pruned causal LM (pruned weights are exact zeros).
        tokenizer: its tokenizer, or ``None``.
        folder: destination (created if needed; use :func:`export_folder` or
            :func:`llm_surgeon.util.io.atomic_output` for an atomic write).
        source: extra entries for ``export.json`` (where the model came from).

    Returns:
        The plan that was written.
    """
    strip_quantization(model)
    plan = compact_model(model)
    compact = build_compact(model, plan)
    if not plan.plain:  # copy the modeling files and write auto_map
        type(plan.config).register_for_auto_class()
        type(compact).register_for_auto_class("AutoModelForCausalLM")
    save_model(compact, tokenizer, folder)
    write_json(Path(folder) / PLAN_FILE, {**plan.to_dict(), "source": source or {}})
    log.info("compact export: %s", plan.summary().splitlines()[0])
    return plan


def load(spec: str, *, dtype: str = "float32", device: str = "cpu",
         trust_remote_code: bool = False) -> tuple[nn.Module, Any]:
    """Load a model and its tokenizer; compact folders load with the library's classes.

    Same arguments as :func:`llm_surgeon.model.loading.load_model` (aliases, folders, GGUF
    files, hub ids); a compact folder needs no ``trust_remote_code``.
    """
    register_auto_classes()
    return loading.load_model(spec, dtype=dtype, device=device, trust_remote_code=trust_remote_code)


def check_export(source: str, out: str | Path | None, *, overwrite: bool = False,
                 trust_remote_code: bool = False) -> None:
    """Check an export before any weights are loaded: architecture, weight files, output folder.

    Raises:
        ConfigError: the source is missing or ``out`` is not empty (without ``overwrite``).
        UnsupportedArchitectureError: the model's architecture has no compact form.
    """
    register_auto_classes()
    check_supported(load_model_config(source, trust_remote_code=trust_remote_code, check_files=False))
    load_model_config(source, trust_remote_code=trust_remote_code)  # then the weight files
    if out is not None:
        check_output_folder(out, overwrite=overwrite)


def export_folder(source: str, out: str | Path, *, dtype: str = "float32", overwrite: bool = False,
                  trust_remote_code: bool = False) -> CompactPlan:
    """Export the zeroed model ``source`` (a pruned folder) to the compact folder ``out``.

    ``out`` is written atomically: a failure leaves nothing that looks complete.
    """
    check_export(source, out, overwrite=overwrite, trust_remote_code=trust_remote_code)
    model, tokenizer = load(source, dtype=dtype, trust_remote_code=trust_remote_code)
    with atomic_output(out, overwrite=overwrite) as folder:
        return save_compact(model, tokenizer, folder, source={"model": str(source), "dtype": dtype})
