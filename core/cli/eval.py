"""``llm-surgeon eval``: perplexity on non-overlapping windows of a split, and fidelity checks.

Compact folders (``llm-surgeon export``) load with the library's classes. With
``--semi-structured`` the 2:4 Linear weights run on the GPU's sparse kernels. With
``--fidelity`` it also measures agreement with a dense reference (``--reference``, by
default the model a pruned output folder was pruned from, read from its
``run_config.json``) and accuracy on the bundled questions.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import time
from pathlib import Path
from typing import Any

from llm_surgeon.cli.options import (
    add_bos_argument,
    add_data_arguments,
    add_fidelity_arguments,
    add_tasks_arguments,
    fidelity_overrides,
    format_fidelity,
    tasks_fields,
)
from llm_surgeon.data.config import DataConfig, EvalConfig, FidelityConfig, TasksConfig
from llm_surgeon.errors import ConfigError, validation_message

logger = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``eval`` subcommand."""
    parser = subparsers.add_parser(
        "eval",
        help="measure perplexity",
        description="Perplexity: exp of the mean over non-overlapping windows of the mean "
        "next-token cross-entropy (the split is joined into one string and tokenised once).",
    )
    parser.add_argument("model", metavar="MODEL", help="alias (smollm2-135m), local folder, .gguf file or hub id")
    add_data_arguments(parser)
    add_bos_argument(parser)
    parser.add_argument("--split", default="test", help="split to evaluate (default: test)")
    parser.add_argument("--seqlen", type=int, default=512, help="tokens per window (default: 512)")
    parser.add_argument("--eval-windows", type=int, default=None, metavar="N",
                        help="evaluate only the first N windows (default: all)")
    parser.add_argument("--batch-size", type=int, default=1, help="windows per forward pass")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1... (default: cpu)")
    parser.add_argument("--dtype", default="float32", help="model dtype (default: float32)")
    parser.add_argument("--trust-remote-code", action="store_true", help="allow model code from the checkpoint")
    parser.add_argument("--semi-structured", action="store_true",
                        help="run 2:4 Linear weights as sparse semi-structured tensors "
                             "(CUDA, Ampere or newer; float16 or bfloat16)")
    parser.add_argument("--json", metavar="OUT", default=None, help="also write the result as JSON to OUT")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--no-ppl", action="store_true", help="skip perplexity (e.g. with --tasks only)")
    add_tasks_arguments(parser)
    add_fidelity_arguments(parser)
    parser.add_argument("--reference", metavar="DENSE", default=None,
                        help="--fidelity: the dense model to compare with (default: the `model` of "
                        "MODEL/run_config.json, for a pruned output folder)")
    parser.set_defaults(func=run)


def _eval_config(args: argparse.Namespace) -> EvalConfig:
    try:
        return EvalConfig(
            data=DataConfig(dataset=args.data or "wikitext2", data_dir=args.data_dir, split=args.split),
            seqlen=args.seqlen,
            windows=args.eval_windows,
            batch_size=args.batch_size,
            bos=args.bos or "auto",
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(validation_message(exc)) from None


def _tasks_config(args: argparse.Namespace) -> TasksConfig | None:
    fields = tasks_fields(args)
    if not fields:
        return None
    try:
        return TasksConfig(**fields)
    except (TypeError, ValueError) as exc:
        raise ConfigError(validation_message(exc)) from None


def _fidelity_config(args: argparse.Namespace) -> FidelityConfig | None:
    overrides = fidelity_overrides(args)
    if not overrides.pop("enabled", False):
        if overrides or args.reference:
            raise ConfigError("--fidelity-* and --reference need --fidelity")
        return None
    try:
        return FidelityConfig(enabled=True, **overrides)
    except (TypeError, ValueError) as exc:
        raise ConfigError(validation_message(exc)) from None


def recorded_dense(spec: str) -> str | None:
    """The model a pruned output folder was pruned from (``run_config.json``), if any."""
    try:
        config = json.loads((Path(spec).expanduser() / "run_config.json").read_text())
    except (OSError, ValueError):
        return None
    model = config.get("model") if isinstance(config, dict) else None
    return model if isinstance(model, str) else None


def _check_template(spec: str, trust_remote_code: bool) -> None:
    from llm_surgeon.model.loading import has_chat_template, load_model_config

    load_model_config(spec, trust_remote_code=trust_remote_code)
    if has_chat_template(spec) is False:
        raise ConfigError(f"{spec!r} has no chat template, which --fidelity needs (it renders the "
                          "prompts with the model's own template); use a chat or instruct model")


def _validate(args: argparse.Namespace, ev: EvalConfig, tasks: TasksConfig | None,
              fidelity: FidelityConfig | None) -> None:
    """Check everything before any weights are loaded."""
    from llm_surgeon.export import register_auto_classes
    from llm_surgeon.model.loading import context_length, load_model_config
    from llm_surgeon.run.validate import check_data, check_device
    from llm_surgeon.util.torch_util import torch_dtype

    if args.no_ppl and tasks is None and fidelity is None:
        raise ConfigError("--no-ppl leaves nothing to evaluate; add --tasks or --fidelity")
    if not args.no_ppl:
        check_data(ev.data, "evaluation")
    if tasks is not None:
        from llm_surgeon.data.tasks import check_tasks

        check_tasks(tasks)
    dtype = torch_dtype(args.dtype)
    check_device(args.device)
    if args.semi_structured:
        from llm_surgeon.export.semi_structured import check_device as check_sparse_device

        check_sparse_device(args.device, dtype)
    register_auto_classes()
    model_config = load_model_config(args.model, trust_remote_code=args.trust_remote_code)
    if fidelity is not None:
        _check_template(args.model, args.trust_remote_code)
        if args.reference:
            _check_template(args.reference, args.trust_remote_code)
    limit = context_length(model_config)
    if not args.no_ppl and limit is not None and ev.seqlen > limit:
        raise ConfigError(f"seqlen {ev.seqlen} is longer than the model's context ({limit} tokens)")


def run(args: argparse.Namespace) -> int:
    """Load the model, evaluate perplexity, downstream tasks and/or fidelity; print; optionally write JSON."""
    from llm_surgeon.util.io import write_json
    from llm_surgeon.util.progress import no_progress_bars

    ev = _eval_config(args)
    tasks = _tasks_config(args)
    fidelity = _fidelity_config(args)
    _validate(args, ev, tasks, fidelity)
    with no_progress_bars(args.no_progress):
        result, lines = _evaluate(args, ev, tasks, fidelity)
    print("\n".join(lines))
    if args.json:
        write_json(args.json, result)
        logger.info("wrote %s", args.json)
    return 0


def _reference(args: argparse.Namespace, fidelity: FidelityConfig, stack: contextlib.ExitStack,
               progress: bool) -> tuple[Any, dict[str, Any]]:
    """The dense reference (``None`` without one) and its info, computed before MODEL loads."""
    from llm_surgeon.model.loading import load_model, load_tokenizer
    from llm_surgeon.run.chat import dense_reference
    from llm_surgeon.run.ppl_cache import outputs_identity

    spec = args.reference or recorded_dense(args.model)
    if spec is None:
        logger.warning("no --reference and no run_config.json in %s: questions only", args.model)
        return None, {}
    tokenizer = load_tokenizer(args.model, trust_remote_code=args.trust_remote_code)
    kwargs = dict(dtype=args.dtype, device=args.device, trust_remote_code=args.trust_remote_code)
    reference, info = stack.enter_context(dense_reference(
        outputs_identity(spec, args.dtype, args.device), fidelity, tokenizer,
        lambda: load_model(spec, **kwargs), progress=progress))
    return reference, {**info, "model": spec}


def _evaluate(args: argparse.Namespace, ev: EvalConfig, tasks: TasksConfig | None,
              fidelity: FidelityConfig | None) -> tuple[dict, list[str]]:
    """Load the model and evaluate; the JSON result and the lines to print."""
    from llm_surgeon.export import load, semi_structured
    from llm_surgeon.util.resources import library_versions, peak_rss_mb

    start = time.perf_counter()
    progress = not args.no_progress
    lines: list[str] = []
    with contextlib.ExitStack() as stack:
        reference, reference_info = _reference(args, fidelity, stack, progress) if fidelity else (None, {})
        model, tokenizer = load(
            args.model, dtype=args.dtype, device=args.device, trust_remote_code=args.trust_remote_code
        )
        sparse = semi_structured(model) if args.semi_structured else None
        result: dict = {"model": args.model, "dtype": args.dtype, "device": args.device,
                        "semi_structured": None if sparse is None else {
                            "backend": sparse.backend, "converted": len(sparse.converted),
                            "dense": len(sparse.skipped)}}
        if not args.no_ppl:
            result.update(_perplexity(model, tokenizer, ev, progress=progress))
            lines.append(
                f"perplexity {result['perplexity']:.4f}  ({result['windows']} windows x {ev.seqlen} tokens, "
                f"{result['dataset']} {result['split']}, {result['seconds_eval']:.1f} s)")
        if tasks is not None:
            from llm_surgeon.data.tasks import accuracy_line, run_tasks

            result["downstream"] = run_tasks(model, tokenizer, tasks)
            lines.append(f"tasks      {accuracy_line(result['downstream'])}")
        if fidelity is not None:
            from llm_surgeon.data.fidelity import measure_fidelity

            result["fidelity"] = measure_fidelity(model, tokenizer, fidelity, reference, progress=progress)
            result["fidelity"]["reference"] = reference_info or None
            lines.append(f"fidelity {format_fidelity(result['fidelity'])}"
                         + (f"  (reference {reference_info['model']})" if reference_info else ""))
    result.update(seconds_total=time.perf_counter() - start, peak_rss_mb=peak_rss_mb(),
                  versions=library_versions())
    return result, lines


def _perplexity(model, tokenizer, ev: EvalConfig, *, progress: bool) -> dict:
    """The perplexity part of the ``eval`` result."""
    from llm_surgeon.data import perplexity
    from llm_surgeon.data.windows import eval_windows

    data_info: dict = {}
    windows = eval_windows(tokenizer, ev, data_info)
    eval_start = time.perf_counter()
    ppl = perplexity(model, windows, batch_size=ev.batch_size, progress=progress)
    return {
        "dataset": data_info["dataset"],
        "split": data_info["split_used"],
        "source": data_info["source"],
        "seqlen": ev.seqlen,
        "windows": int(windows.shape[0]),
        "tokens": int(windows.numel()),
        "bos_token_id": data_info["bos_token_id"],
        "perplexity": ppl,
        "seconds_eval": time.perf_counter() - eval_start,
    }
