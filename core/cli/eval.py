"""``llm-surgeon eval``: perplexity of a model on non-overlapping windows of a split.

Compact folders (``llm-surgeon export``) load with the library's classes. With
``--semi-structured`` the 2:4 Linear weights run on the GPU's sparse kernels.
"""

from __future__ import annotations

import argparse
import logging
import time

from llm_surgeon.cli.options import (
    add_bos_argument,
    add_data_arguments,
    add_tasks_arguments,
    tasks_fields,
)
from llm_surgeon.data.config import DataConfig, EvalConfig, TasksConfig
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


def _validate(args: argparse.Namespace, ev: EvalConfig, tasks: TasksConfig | None) -> None:
    """Check everything before any weights are loaded."""
    from llm_surgeon.export import register_auto_classes
    from llm_surgeon.model.loading import context_length, load_model_config
    from llm_surgeon.run.validate import check_data, check_device
    from llm_surgeon.util.torch_util import torch_dtype

    if args.no_ppl and tasks is None:
        raise ConfigError("--no-ppl leaves nothing to evaluate; add --tasks")
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
    limit = context_length(model_config)
    if not args.no_ppl and limit is not None and ev.seqlen > limit:
        raise ConfigError(f"seqlen {ev.seqlen} is longer than the model's context ({limit} tokens)")


def run(args: argparse.Namespace) -> int:
    """Load the model, evaluate perplexity and/or downstream tasks, print, optionally write JSON."""
    from llm_surgeon.util.io import write_json
    from llm_surgeon.util.progress import no_progress_bars

    ev = _eval_config(args)
    tasks = _tasks_config(args)
    _validate(args, ev, tasks)
    with no_progress_bars(args.no_progress):
        result, lines = _evaluate(args, ev, tasks)
    print("\n".join(lines))
    if args.json:
        write_json(args.json, result)
        logger.info("wrote %s", args.json)
    return 0


def _evaluate(args: argparse.Namespace, ev: EvalConfig, tasks: TasksConfig | None) -> tuple[dict, list[str]]:
    """Load the model and evaluate; the JSON result and the lines to print."""
    from llm_surgeon.export import load, semi_structured
    from llm_surgeon.util.resources import library_versions, peak_rss_mb

    start = time.perf_counter()
    model, tokenizer = load(
        args.model, dtype=args.dtype, device=args.device, trust_remote_code=args.trust_remote_code
    )
    sparse = semi_structured(model) if args.semi_structured else None
    result: dict = {"model": args.model, "dtype": args.dtype, "device": args.device,
                    "semi_structured": None if sparse is None else {
                        "backend": sparse.backend, "converted": len(sparse.converted),
                        "dense": len(sparse.skipped)}}
    lines = []
    if not args.no_ppl:
        result.update(_perplexity(model, tokenizer, ev, progress=not args.no_progress))
        lines.append(
            f"perplexity {result['perplexity']:.4f}  ({result['windows']} windows x {ev.seqlen} tokens, "
            f"{result['dataset']} {result['split']}, {result['seconds_eval']:.1f} s)")
    if tasks is not None:
        from llm_surgeon.data.tasks import accuracy_line, run_tasks

        result["downstream"] = run_tasks(model, tokenizer, tasks)
        lines.append(f"tasks      {accuracy_line(result['downstream'])}")
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
