"""Subcommands of the ``llm-surgeon`` CLI, one module each, plus shared argument helpers."""

from __future__ import annotations

import argparse
from typing import Any

from llm_surgeon.errors import ConfigError


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """``--data`` and ``--data-dir`` (shared by ``eval`` and ``prune``; default ``None``)."""
    parser.add_argument(
        "--data", default=None, metavar="NAME",
        help="dataset: wikitext2 (default) or text (local text files given by --data-dir); "
        "for calibration (prune, compare) also chat (conversations in the model's chat "
        "template) and mixtures such as wikitext2:0.5,chat:0.5",
    )
    parser.add_argument(
        "--data-dir", default=None, metavar="DIR",
        help="folder with wiki.{train,valid,test}.raw (or a text file / folder for --data text); "
        "without it WikiText-2 is downloaded from the Hugging Face hub",
    )


def add_fidelity_arguments(parser: argparse.ArgumentParser) -> None:
    """``--fidelity`` and its settings (shared by ``eval`` and ``prune``; defaults ``None``)."""
    g = parser.add_argument_group("fidelity (agreement with the dense model, question accuracy)")
    g.add_argument("--fidelity", action="store_true", default=None,
                   help="measure KL to the dense model and greedy-token match on held-out chat "
                   "prompts, and accuracy on the bundled questions")
    g.add_argument("--fidelity-prompts", type=int, metavar="N", help="first N held-out prompts (all 64)")
    g.add_argument("--fidelity-tokens", type=int, metavar="N",
                   help="dense response tokens compared along (32)")
    g.add_argument("--fidelity-questions", type=int, metavar="N", help="first N questions (all 80)")


def fidelity_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The :class:`~llm_surgeon.data.config.FidelityConfig` fields the fidelity flags set."""
    given = {"enabled": args.fidelity, "prompts": args.fidelity_prompts,
             "response_tokens": args.fidelity_tokens, "questions": args.fidelity_questions}
    return {k: v for k, v in given.items() if v is not None}


def format_fidelity(result: dict[str, Any]) -> str:
    """One line of fidelity results: KL and greedy match (with a reference) and questions."""
    n = result.get("questions") or 0
    correct = round((result.get("question_accuracy") or 0.0) * n)
    text = f"questions {correct}/{n}"
    if result.get("dense_question_accuracy") is not None:
        text += f" (dense {round(result['dense_question_accuracy'] * n)}/{n})"
    if result.get("kl") is None:
        return text + "; no dense reference, so no KL or greedy match"
    return (f"KL to dense {result['kl']:.4f} nats/token, greedy match {100 * result['match_rate']:.1f}% "
            f"({result['heldout_prompts']} prompts, {result['positions']} tokens); {text}")


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
