"""``llm-surgeon prune``: prune a model and write the pruned model, a report and figures.

Flags default to ``None`` so that, with ``--recipe``, only the flags actually given
override the recipe. Everything is validated (:func:`llm_surgeon.run.validate.validate_run`)
before any weights are loaded.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

from llm_surgeon.cli.options import (
    add_bos_argument,
    add_data_arguments,
    add_fidelity_arguments,
    add_tasks_arguments,
    comma_list,
    fidelity_overrides,
    format_fidelity,
    parse_options,
    tasks_fields,
)
from llm_surgeon.data.mixture import text_dataset
from llm_surgeon.errors import ConfigError
from llm_surgeon.methods.lora.settings import LoraSettings
from llm_surgeon.run.config import CHECKPOINT_KEEP, SAVE_FORMATS, RunConfig

logger = logging.getLogger(__name__)

#: Curvature options with their own flag: ``--flag`` -> option name.
CURVATURE_FLAGS = {"rank": int, "iterations": int, "fisher_type": str, "samples": int}
#: Structure options with their own flag.
STRUCTURE_FLAGS = {"chunk_size": int}
#: LoRA settings whose flag is not ``--lora-<field>``.
_LORA_FLAG_NAMES = {"steps_per_shot": "lora-steps"}


def _lora_fields() -> list[attrs.Attribute]:
    return [f for f in attrs.fields(LoraSettings) if f.name != "enabled"]


def _add_lora_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("LoRA (first-order corrections after each shot)")
    group.add_argument("--lora", dest="lora_enabled", action="store_true", default=None,
                       help="fine-tune LoRA adapters after each shot and merge them")
    for field in _lora_fields():
        flag = _LORA_FLAG_NAMES.get(field.name, "lora-" + field.name.replace("_", "-"))
        default = field.default if not isinstance(field.default, attrs.Factory) else None
        if isinstance(default, bool):
            kind: Any = None
        elif isinstance(default, (int, float)):
            kind = type(default)
        else:
            kind = comma_list
        doc = f"LoRA {field.name} (default: {default})"
        if kind is None:
            group.add_argument(f"--{flag}", dest=f"lora_{field.name}", action="store_true", default=None, help=doc)
        else:
            group.add_argument(f"--{flag}", dest=f"lora_{field.name}", type=kind, default=None,
                               metavar="VALUE", help=doc + (" (comma-separated)" if kind is comma_list else ""))


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``prune`` subcommand."""
    p = subparsers.add_parser(
        "prune",
        help="prune a model",
        description="Prune a causal LM in one or more shots and write the pruned model, "
        "report.json, masks.safetensors and figures/ to --out. Values from --recipe are "
        "overridden by the flags given.",
    )
    p.add_argument("model", metavar="MODEL", nargs="?", default=None,
                   help="alias (smollm2-135m), local folder, .gguf file or hub id (or from --recipe)")
    p.add_argument("--recipe", metavar="FILE", help="YAML or TOML recipe; flags override its values")

    g = p.add_argument_group("method")
    g.add_argument("--method", help="pruning method (see `llm-surgeon plugins`; default: surgeon)")
    g.add_argument("--curvature", help="curvature estimator (default: the method's)")
    g.add_argument("--structure", help="row-col (default), element, N:M such as 2:4, or another registered one")
    size = g.add_mutually_exclusive_group()
    size.add_argument("--target-size", type=float, help="fraction of prunable weights kept, in (0, 1]")
    size.add_argument("--sparsity", type=float, help="fraction of prunable weights removed, in [0, 1)")
    g.add_argument("--shots", type=int, help="number of shots (default: 5)")
    g.add_argument("--schedule", help="target-size schedule over shots: linear (default) or cubic")
    g.add_argument("--damping-g", type=float,
                   help="relative damping of the output factor G (default: the structure's, 0.1)")
    g.add_argument("--damping-a", type=float,
                   help="relative damping of the input factor A (default: the structure's, "
                        "0.1 for row-col, 0.01 for element and N:M)")
    g.add_argument("--update", choices=["full", "none"], help="weight update (default: the method's)")
    g.add_argument("--rank", type=int, help="curvature option: Kronecker rank")
    g.add_argument("--iterations", type=int, help="curvature option: power iterations")
    g.add_argument("--fisher-type", help="curvature option: empirical or sampled")
    g.add_argument("--samples", type=int, help="curvature option: sampled labels per token")
    g.add_argument("--chunk-size", type=int, help="structure option: chunk size")
    g.add_argument("--method-option", action="append", metavar="KEY=VALUE", help="other method option")
    g.add_argument("--curvature-option", action="append", metavar="KEY=VALUE", help="other curvature option")
    g.add_argument("--structure-option", action="append", metavar="KEY=VALUE", help="other structure option")

    d = p.add_argument_group("data")
    add_data_arguments(d)
    add_bos_argument(d)
    d.add_argument("--calib-split", help="calibration split (default: train, else validation)")
    d.add_argument("--eval-split", help="evaluation split (default: test)")
    d.add_argument("--nsamples", type=int, help="calibration windows (default: 32)")
    d.add_argument("--seqlen", type=int, help="tokens per window, calibration and evaluation (default: 512)")
    d.add_argument("--batch-size", type=int, help="windows per forward pass")
    d.add_argument("--seed", type=int, help="random seed (calibration windows and sampling)")
    d.add_argument("--eval-windows", type=int, metavar="N", help="evaluate on the first N windows only")
    d.add_argument("--eval-every-shot", action="store_true", default=None, help="perplexity after every shot")
    d.add_argument("--no-eval", action="store_true", default=None, help="skip perplexity evaluation")
    d.add_argument("--chat-file", metavar="FILE",
                   help="--data chat: a JSONL of conversations ({\"messages\": [...]} per line) instead "
                   "of self-generated ones")
    d.add_argument("--chat-prompts", type=int, metavar="N",
                   help="self-generated chat: answer the first N bundled seed prompts (all 320)")
    d.add_argument("--chat-tokens", type=int, metavar="N", help="self-generated chat: longest answer (128)")
    d.add_argument("--chat-temperature", type=float, metavar="T",
                   help="self-generated chat: sampling temperature (0.7)")
    add_fidelity_arguments(p)

    r = p.add_argument_group("run")
    r.add_argument("--device", help="cpu (default), cuda, cuda:1...")
    r.add_argument("--dtype", help="model dtype while pruning (default: float32)")
    r.add_argument("--curvature-device", metavar="DEVICE",
                   help="where curvature statistics, factors and their inverses live (default: the "
                        "model's device; e.g. cpu to keep them in host memory while the model is on cuda)")
    r.add_argument("--curvature-dtype", choices=["float32", "float64"],
                   help="precision of the curvature statistics and factors (default: float32; "
                        "factorisations always run in float64)")
    r.add_argument("--out", metavar="DIR", help="output folder (written atomically)")
    r.add_argument("--overwrite", action="store_true", default=None,
                   help="replace a non-empty --out and discard an interrupted run of it")
    r.add_argument("--resume", metavar="OUT",
                   help="continue the interrupted run of OUT after its last checkpoint (its "
                        "config is read from the checkpoint; flags given must not change it)")
    r.add_argument("--checkpoints", choices=CHECKPOINT_KEEP, default="all",
                   help="with --out, checkpoint every shot (all, default), keep only the last "
                        "checkpoint (last), or none (off)")
    r.add_argument("--no-save-model", action="store_true", default=None, help="write the report only")
    r.add_argument("--save", choices=SAVE_FORMATS, default=None,
                   help="zeroed (default: same shapes, pruned weights zero), compact (physically "
                        "smaller; structured results), or both (compact in OUT/compact)")
    r.add_argument("--trust-remote-code", action="store_true", default=None,
                   help="allow model code from the checkpoint")
    r.add_argument("--no-progress", action="store_true", help="no progress bars")
    r.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    add_tasks_arguments(p)
    _add_lora_arguments(p)
    p.set_defaults(func=run)


def _set(tree: dict[str, Any], path: str, value: Any) -> None:
    """``tree["a"]["b"] = value`` for ``path="a.b"``, skipping ``None``."""
    if value is None:
        return
    *parents, leaf = path.split(".")
    for key in parents:
        tree = tree.setdefault(key, {})
    tree[leaf] = value


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The :class:`RunConfig` fields the given flags set (nested, like a recipe)."""
    o: dict[str, Any] = {}
    _set(o, "model", args.model)
    for name in ("method", "curvature", "structure", "shots", "schedule", "damping_g", "damping_a",
                 "update", "device", "dtype", "curvature_device", "out", "seed"):
        _set(o, name, getattr(args, name))
    _set(o, "target_size", args.target_size)
    if args.sparsity is not None:
        if not 0.0 <= args.sparsity < 1.0:
            raise ConfigError(f"--sparsity must be in [0, 1), got {args.sparsity}")
        o["target_size"] = 1.0 - args.sparsity
    _set(o, "trust_remote_code", args.trust_remote_code)
    if args.no_save_model:
        o["save_model"] = False
    _set(o, "save", args.save)

    curvature = {k: getattr(args, k) for k in CURVATURE_FLAGS if getattr(args, k) is not None}
    if args.curvature_dtype is not None:
        curvature["dtype"] = args.curvature_dtype
    curvature.update(parse_options(args.curvature_option, "--curvature-option"))
    structure = {k: getattr(args, k) for k in STRUCTURE_FLAGS if getattr(args, k) is not None}
    structure.update(parse_options(args.structure_option, "--structure-option"))
    method = parse_options(args.method_option, "--method-option")
    for key, options in (("curvature_options", curvature), ("structure_options", structure),
                         ("method_options", method)):
        if options:
            o[key] = options

    _set(o, "calibration.data.dataset", args.data)
    _set(o, "evaluation.data.dataset", text_dataset(args.data) if args.data else None)
    for section in ("calibration", "evaluation"):
        _set(o, f"{section}.data.data_dir", args.data_dir)
        _set(o, f"{section}.seqlen", args.seqlen)
        _set(o, f"{section}.batch_size", args.batch_size)
        _set(o, f"{section}.bos", args.bos)
    _set(o, "calibration.data.split", args.calib_split)
    _set(o, "calibration.nsamples", args.nsamples)
    _set(o, "calibration.seed", args.seed)
    for flag, field in (("chat_file", "file"), ("chat_prompts", "max_prompts"),
                        ("chat_tokens", "max_new_tokens"), ("chat_temperature", "temperature")):
        _set(o, f"calibration.chat.{field}", getattr(args, flag))
    for field, value in fidelity_overrides(args).items():
        _set(o, f"fidelity.{field}", value)
    _set(o, "evaluation.data.split", args.eval_split)
    _set(o, "evaluation.windows", args.eval_windows)
    _set(o, "evaluation.every_shot", args.eval_every_shot)
    if args.no_eval:
        o.setdefault("evaluation", {})["enabled"] = False

    downstream = tasks_fields(args)
    if downstream:
        o["downstream"] = downstream
    _set(o, "lora.enabled", args.lora_enabled)
    for field in _lora_fields():
        _set(o, f"lora.{field.name}", getattr(args, f"lora_{field.name}"))
    return o


def build_config(args: argparse.Namespace) -> RunConfig:
    """The run configuration from ``--recipe`` (if any) overridden by the given flags.

    With ``--resume OUT`` and neither MODEL nor ``--recipe``, the interrupted run's
    config is the base the flags override (any change is refused later, by the runner).
    """
    from llm_surgeon.run.recipes import config_from_data, load_recipe, merge, normalize

    if args.resume:
        if args.out is not None and Path(args.out).absolute() != Path(args.resume).absolute():
            raise ConfigError(f"--out {args.out} and --resume {args.resume} name different folders")
        args.out = args.resume
    if args.recipe:
        base = load_recipe(args.recipe)
    elif args.resume and args.model is None:
        from llm_surgeon.run.output import stored_config

        base = stored_config(args.resume)
    else:
        base = {}
    data = merge(base, normalize(overrides_from_args(args)))
    if not data.get("model"):
        raise ConfigError("no model given (pass MODEL or set `model` in the recipe)")
    return config_from_data(data)


def _summary(report: dict[str, Any]) -> str:
    def fmt(x: Any) -> str:
        return f"{x:.4f}" if isinstance(x, float) else str(x)

    lines = [
        f"model          {report.get('model')}",
        f"method         {report.get('method')} (curvature {report.get('curvature')}, "
        f"structure {report.get('structure')})",
        f"target size    {fmt(report.get('target_size'))}",
        f"achieved size  {fmt(report.get('achieved_size'))}",
        f"ppl before     {fmt(report.get('ppl_before'))}",
        f"ppl after      {fmt(report.get('ppl_after'))}",
    ]
    sources = (report.get("calibration") or {}).get("sources") or []
    if len(sources) > 1 or any(src["name"] == "chat" for src in sources):
        parts = ", ".join(f"{src['name']} {src['windows']}" for src in sources)
        lines.append(f"calibration    windows: {parts}")
    if report.get("fidelity"):
        lines.append(f"fidelity       {format_fidelity(report['fidelity'])}")
    if report.get("downstream"):
        from llm_surgeon.data.tasks import accuracy_line

        lines.append(f"tasks after    {accuracy_line(report['downstream'])}")
    if report.get("compact"):
        c = report["compact"]
        lines.append(f"compact        {c['num_parameters']:,} of {c['original_num_parameters']:,} "
                     f"parameters (real size {c['real_size']:.4f}), in {c['folder']}")
    if report.get("seconds_total") is not None:
        lines.append(f"seconds        {report['seconds_total']:.1f}")
    if report.get("out"):
        lines.append(f"output         {report['out']}")
    return "\n".join(lines)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (a scheduler's stop) ends the run like SIGINT: cleanly, checkpoints kept."""
    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(args: argparse.Namespace) -> int:
    """Validate, prune, print perplexity before and after."""
    from llm_surgeon.dist import rank_from_env
    from llm_surgeon.run.validate import validate_run
    from llm_surgeon.util.io import check_output_folder

    config = build_config(args)
    validate_run(config)
    overwrite = bool(args.overwrite)
    if config.out is None:
        if rank_from_env() == 0:
            logger.warning("no --out given: nothing will be written")
    elif not args.resume:
        check_output_folder(config.out, overwrite=overwrite)

    from llm_surgeon.run.runner import prune

    with _sigterm_as_interrupt():
        report = prune(config, progress=not args.no_progress, overwrite=overwrite,
                       resume=bool(args.resume), checkpoints=args.checkpoints)
    if rank_from_env() != 0:
        return 0  # in a torchrun job rank 0 prints the report
    if config.out:
        from llm_surgeon.analysis.run_figures import write_run_figures

        write_run_figures(config.out, report)
    if args.json:
        from llm_surgeon.util.io import to_json_text

        sys.stdout.write(to_json_text(report))
    else:
        report.setdefault("out", config.out)
        print(_summary(report))
    return 0

