"""Subcommands of the ``llm-surgeon`` CLI, one module each, plus shared argument helpers."""

from __future__ import annotations

import argparse
from typing import Any

from llm_surgeon.errors import ConfigError


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """``--data`` and ``--data-dir`` (shared by ``eval`` and ``prune``; default ``None``)."""
    parser.add_argument(
        "--data", default=None, metavar="NAME",
        help="dataset: wikitext2 (default), wikitext2-bundled (the copy shipped with llm-surgeon: "
        "validation and test), python-stdlib, manpages-de or text (local text files given by "
        "--data-dir); for calibration (prune, compare) also chat (conversations in the model's "
        "chat template) and mixtures of chat with one of them, such as wikitext2:0.5,chat:0.5",
    )
    parser.add_argument(
        "--data-dir", default=None, metavar="DIR",
        help="folder with wiki.{train,valid,test}.raw (or a text file / folder for --data text); "
        "without it WikiText-2 comes from the Hugging Face hub, its cache, or (hub not reachable) "
        "the shipped copy",
    )


def add_bos_argument(parser: argparse.ArgumentParser) -> None:
    """``--bos auto|always|never``: whether windows start with the BOS token (default ``None``)."""
    parser.add_argument(
        "--bos", choices=["auto", "always", "never"], default=None,
        help="start every calibration and evaluation window with the BOS token: auto (default: "
        "when the tokenizer adds one to a text, e.g. Gemma; not for SmolLM2), always, never",
    )


def add_tasks_arguments(parser: argparse.ArgumentParser) -> None:
    """``--tasks`` and its settings: lm-eval downstream evaluation (the ``eval`` extra)."""
    g = parser.add_argument_group("downstream tasks (lm-evaluation-harness: pip install 'llm-surgeon[eval]')")
    g.add_argument("--tasks", type=comma_list, default=None, metavar="T1,T2",
                   help="lm-eval tasks, e.g. piqa,arc_easy (their data must be available offline)")
    g.add_argument("--tasks-dir", default=None, metavar="DIR",
                   help="folder of local lm-eval task YAMLs (data files relative to each YAML)")
    g.add_argument("--tasks-limit", type=int, default=None, metavar="N", help="at most N documents per task")
    g.add_argument("--tasks-fewshot", type=int, default=None, metavar="K", help="few-shot examples (default 0)")
    g.add_argument("--tasks-batch-size", type=int, default=None, metavar="B", help="lm-eval batch size (default 1)")


def tasks_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The :class:`~llm_surgeon.data.config.TasksConfig` fields the ``--tasks*`` flags set."""
    fields = {"tasks": args.tasks, "tasks_dir": args.tasks_dir, "limit": args.tasks_limit,
              "num_fewshot": args.tasks_fewshot, "batch_size": args.tasks_batch_size}
    if args.tasks is None and any(v is not None for v in fields.values()):
        raise ConfigError("--tasks-dir, --tasks-limit, --tasks-fewshot and --tasks-batch-size need --tasks")
    return {k: v for k, v in fields.items() if v is not None}


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
