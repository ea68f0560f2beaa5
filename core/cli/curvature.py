"""``llm-surgeon curvature``: estimate curvatures on calibration windows and report their cost.

For each estimator: passes over the data, seconds in passes (forward/backward) and in
factor algebra, curvature memory and the process's peak resident memory. Nothing is
pruned. ``llm-surgeon curvature-figure`` (:mod:`llm_surgeon.cli.curvature_figure`)
draws the Fisher of a tiny model beside its Kronecker approximations.
"""

from __future__ import annotations

import argparse
import gc
import logging
import time
from typing import Any

import attrs

from llm_surgeon.cli.options import add_data_arguments, parse_options
from llm_surgeon.data.config import CalibrationConfig, DataConfig
from llm_surgeon.errors import ConfigError, validation_message

logger = logging.getLogger(__name__)

#: Estimators measured when ``--curvature`` is not given.
DEFAULT_CURVATURES = ("identity", "activations", "diagonal", "kfac", "nearest-kfac")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``curvature`` subcommand."""
    p = subparsers.add_parser(
        "curvature",
        help="estimate curvatures and report their time and memory",
        description="Estimate one or more curvatures of every prunable layer on calibration "
        "windows and print, per estimator, the passes over the data, seconds in passes and in "
        "factor algebra, curvature memory and peak resident memory.",
    )
    p.add_argument("model", metavar="MODEL", help="alias (smollm2-135m), local folder, .gguf file or hub id")
    g = p.add_argument_group("curvature")
    g.add_argument("--curvature", default=",".join(DEFAULT_CURVATURES), metavar="NAME[,NAME...]",
                   help=f"estimators to run, comma-separated (default: {','.join(DEFAULT_CURVATURES)})")
    g.add_argument("--rank", type=int, help="Kronecker rank R_K (estimators that take it)")
    g.add_argument("--iterations", type=int, help="power iterations (estimators that take it)")
    g.add_argument("--fisher-type", help="empirical (default) or sampled")
    g.add_argument("--samples", type=int, help="sampled labels per token")
    g.add_argument("--curvature-dtype", help="accumulation dtype: float32 (default) or float64")
    g.add_argument("--curvature-device", help="where factors live (default: the model's device)")
    g.add_argument("--curvature-option", action="append", metavar="KEY=VALUE", help="other curvature option")
    d = p.add_argument_group("data")
    add_data_arguments(d)
    d.add_argument("--split", default="validation", help="calibration split (default: validation)")
    d.add_argument("--nsamples", type=int, default=32, help="calibration windows (default: 32)")
    d.add_argument("--seqlen", type=int, default=512, help="tokens per window (default: 512)")
    d.add_argument("--batch-size", type=int, default=1, help="windows per forward pass (default: 1)")
    d.add_argument("--seed", type=int, default=0, help="seed of the window positions (default: 0)")
    r = p.add_argument_group("run")
    r.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1...")
    r.add_argument("--dtype", default="float32", help="model dtype (default: float32)")
    r.add_argument("--trust-remote-code", action="store_true", help="allow model code from the checkpoint")
    r.add_argument("--json", metavar="OUT", default=None, help="also write the results as JSON to OUT")
    r.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def _options(args: argparse.Namespace) -> dict[str, Any]:
    options = parse_options(args.curvature_option, "--curvature-option")
    for key, value in (("rank", args.rank), ("iterations", args.iterations),
                       ("fisher_type", args.fisher_type), ("samples", args.samples),
                       ("dtype", args.curvature_dtype), ("device", args.curvature_device)):
        if value is not None:
            options[key] = value
    return options


def build_estimators(names: list[str], options: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(name, estimator, config)`` per name; each option goes to the estimators that take it.

    Raises:
        ConfigError: for an unknown estimator, or an option no chosen estimator takes.
    """
    from llm_surgeon.registry.registry import Kind, get_registry

    registry = get_registry()
    records = [registry.get(Kind.CURVATURE, name) for name in names]
    used: set[str] = set()
    out = []
    for record in records:
        fields = {f.name for f in attrs.fields(record.config_cls)} if record.config_cls else set()
        mine = {k: v for k, v in options.items() if k in fields}
        used |= set(mine)
        config = record.make_config(**mine)
        out.append((record.name, record.create(config), config))
    unused = sorted(set(options) - used)
    if unused:
        raise ConfigError(f"option(s) {unused} apply to none of the curvatures {names}")
    return out


def _validate(args: argparse.Namespace, cal: CalibrationConfig) -> None:
    """Everything that can be checked before weights are loaded."""
    from llm_surgeon.model.loading import context_length, load_model_config
    from llm_surgeon.run.validate import check_data, check_device
    from llm_surgeon.util.torch_util import torch_dtype

    check_data(cal.data, "calibration")
    torch_dtype(args.dtype)
    check_device(args.device)
    if args.curvature_device:
        check_device(args.curvature_device)
    limit = context_length(load_model_config(args.model, trust_remote_code=args.trust_remote_code))
    if limit is not None and cal.seqlen > limit:
        raise ConfigError(f"seqlen {cal.seqlen} is longer than the model's context ({limit} tokens)")


def _cal_config(args: argparse.Namespace) -> CalibrationConfig:
    try:
        return CalibrationConfig(
            data=DataConfig(dataset=args.data or "wikitext2", data_dir=args.data_dir, split=args.split),
            nsamples=args.nsamples, seqlen=args.seqlen, batch_size=args.batch_size, seed=args.seed,
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(validation_message(exc)) from None


def run(args: argparse.Namespace) -> int:
    """Estimate each curvature in turn and print a table (and optionally write JSON)."""
    from llm_surgeon.data.windows import calibration_windows
    from llm_surgeon.model.adapters import adapter_for
    from llm_surgeon.model.loading import load_model
    from llm_surgeon.util.io import write_json
    from llm_surgeon.util.resources import library_versions, peak_rss_mb

    names = [n.strip() for n in args.curvature.split(",") if n.strip()]
    cal = _cal_config(args)
    estimators = build_estimators(names, _options(args))
    _validate(args, cal)
    model, tokenizer = load_model(args.model, dtype=args.dtype, device=args.device,
                                  trust_remote_code=args.trust_remote_code)
    windows, data_info = calibration_windows(tokenizer, cal)
    batches = list(windows.split(cal.batch_size))
    modules = adapter_for(model).prunable_modules(model)
    rows = []
    for name, estimator, config in estimators:
        start = time.perf_counter()
        result = estimator.estimate(model, modules, batches, progress=not args.no_progress)
        seconds = time.perf_counter() - start
        rows.append({
            "curvature": name,
            "options": attrs.asdict(config) if config is not None else {},
            "passes": result.passes,
            "seconds_passes": result.seconds_passes,
            "seconds_algebra": result.seconds_algebra,
            "seconds_total": seconds,
            "curvature_mb": result.nbytes / 2**20,
            "peak_rss_mb": peak_rss_mb(),
        })
        logger.info("%s: %d passes, %.1f s", name, result.passes, seconds)
        del result
        gc.collect()
    report = {
        "model": args.model, "modules": len(modules), "tokens": int(windows.numel()),
        "nsamples": cal.nsamples, "seqlen": cal.seqlen, "batch_size": cal.batch_size,
        "split": data_info.get("split_used"), "device": args.device, "dtype": args.dtype,
        "results": rows, "versions": library_versions(),
    }
    print(format_table(rows, report))
    if args.json:
        write_json(args.json, report)
    return 0


def format_table(rows: list[dict[str, Any]], report: dict[str, Any]) -> str:
    """A plain-text table of the results."""
    lines = [
        f"{report['model']}: {report['modules']} modules, {report['nsamples']} x {report['seqlen']} "
        f"tokens ({report['split']}), {report['device']} {report['dtype']}",
        f"{'curvature':<14}{'passes':>7}{'passes s':>11}{'algebra s':>11}{'memory MB':>11}{'peak RSS MB':>13}",
    ]
    for r in rows:
        lines.append(
            f"{r['curvature']:<14}{r['passes']:>7}{r['seconds_passes']:>11.1f}{r['seconds_algebra']:>11.2f}"
            f"{r['curvature_mb']:>11.1f}{r['peak_rss_mb']:>13.0f}"
        )
    return "\n".join(lines)
