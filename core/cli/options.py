"""Subcommands of the ``llm-surgeon`` CLI, one module each, plus shared argument helpers."""

from __future__ import annotations

import argparse
from typing import Any

from llm_surgeon.errors import ConfigError


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """``--data`` and ``--data-dir`` (shared by ``eval`` and ``prune``; default ``None``)."""
    parser.add_argument(
        "--data", default=None, metavar="NAME",
        help="dataset: wikitext2 (default) or text (local text files given by --data-dir)",
    )
    parser.add_argument(
        "--data-dir", default=None, metavar="DIR",
        help="folder with wiki.{train,valid,test}.raw (or a text file / folder for --data text); "
        "without it WikiText-2 is downloaded from the Hugging Face hub",
    )


def add_bos_argument(parser: argparse.ArgumentParser) -> None:
    """``--bos auto|always|never``: whether windows start with the BOS token (default ``None``)."""
    parser.add_argument(
        "--bos", choices=["auto", "always", "never"], default=None,
        help="start every calibration and evaluation window with the BOS token: auto (default: "
        "when the tokenizer adds one to a text, e.g. Gemma; not for SmolLM2), always, never",
    )


def comma_list(text: str) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]`` (an argparse ``type``)."""
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_value(text: str) -> Any:
    """A command-line option value: YAML scalar rules (``3``, ``0.5``, ``true``, ``[1, 2]``, text)."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def parse_options(items: list[str] | None, flag: str) -> dict[str, Any]:
    """``["key=value", ...]`` -> ``{"key": value}`` (dashes in keys become underscores)."""
    options: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{flag} expects KEY=VALUE, got {item!r}")
        options[key.strip().replace("-", "_")] = parse_value(value)
    return options


def disable_library_progress_bars() -> None:
    """Switch off the progress bars of transformers (GGUF dequantisation, weight loading)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
