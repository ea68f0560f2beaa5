"""``llm-surgeon plan``: memory per rank and passes of pruning strategies, from the config alone.

Reads only the model's configuration (a local folder or ``config.json``, GGUF metadata,
an alias or a hub config); no weights are loaded. See :mod:`llm_surgeon.run.plan`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from llm_surgeon.errors import ConfigError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``plan`` subcommand."""
    p = subparsers.add_parser(
        "plan",
        help="estimate memory per rank and passes before a run",
        description="Estimate, from the model's configuration only, the memory each rank needs "
        "(weights, curvature factors, float64 solver work, calibration activations) and the "
        "calibration passes of pruning strategies. Without --method/--structure a table of the "
        "main strategies is printed.",
    )
    p.add_argument("model", metavar="MODEL_OR_CONFIG",
                   help="alias, local folder, config.json, .gguf file or hub id (only its config is read)")
    p.add_argument("--method", help="one method (default: a table of the main strategies)")
    p.add_argument("--curvature", help="curvature estimator (default: the method's)")
    p.add_argument("--structure", help="row-col, element, N:M such as 2:4 (default: row-col with --method)")
    p.add_argument("--rank", type=int, help="nearest-kfac: Kronecker rank (default: 1)")
    p.add_argument("--iterations", type=int, help="nearest-kfac: power iterations per shot (default: 2)")
    p.add_argument("--nsamples", type=int, default=32, help="calibration windows (default: 32)")
    p.add_argument("--seqlen", type=int, default=512, help="tokens per window (default: 512)")
    p.add_argument("--batch-size", type=int, default=1, help="windows per forward pass (default: 1)")
    p.add_argument("--nproc", type=int, default=1, help="ranks of a torchrun job (default: 1)")
    p.add_argument("--shots", type=int, default=5, help="shots, for the pass count (default: 5)")
    p.add_argument("--dtype", default="float32", help="model dtype (default: float32)")
    p.add_argument("--curvature-dtype", default="float32", choices=["float32", "float64"],
                   help="statistics dtype (default: float32)")
    p.add_argument("--layers", type=int, help="plan for this many decoder layers instead of the config's")
    p.add_argument("--trust-remote-code", action="store_true", help="allow model code from the checkpoint")
    p.add_argument("--json", action="store_true", help="print the estimates as JSON")
    p.set_defaults(func=run)


def _calibration(args: argparse.Namespace) -> Any:
    import torch

    from llm_surgeon.run.plan import Calibration
    from llm_surgeon.util.torch_util import STATISTICS_DTYPES, torch_dtype

    for name in ("nsamples", "seqlen", "batch_size", "nproc", "shots"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    weight = torch_dtype(args.dtype)
    statistic = torch_dtype(args.curvature_dtype, STATISTICS_DTYPES)
    return Calibration(nsamples=args.nsamples, seqlen=args.seqlen, batch_size=args.batch_size,
                       nproc=args.nproc, shots=args.shots,
                       weight_bytes=torch.empty((), dtype=weight).element_size(),
                       statistic_bytes=torch.empty((), dtype=statistic).element_size())


def _strategies(args: argparse.Namespace) -> list[Any]:
    from llm_surgeon.run.plan import DEFAULT_STRATEGIES, resolve_strategy

    options = {k: getattr(args, k) for k in ("rank", "iterations") if getattr(args, k) is not None}
    if args.method is None and args.structure is None and args.curvature is None:
        return [resolve_strategy(m, c, s, options if c == "nearest-kfac" else None)
                for m, c, s in DEFAULT_STRATEGIES]
    return [resolve_strategy(args.method or "surgeon", args.curvature, args.structure or "row-col", options)]


def _size(mb: float) -> str:
    return f"{mb / 1024:.2f} GiB" if mb >= 1024 else f"{mb:.0f} MiB"


def _table(model: Any, cal: Any, estimates: list[Any], spec: str) -> str:
    head = (f"model        {spec}: {model.model_type}, {model.layers} layers, "
            f"{model.parameters / 1e9:.2f} B parameters, {len(model.modules)} prunable modules\n"
            f"calibration  {cal.nsamples} x {cal.seqlen} tokens, batch {cal.batch_size}, {cal.nproc} rank(s) "
            f"({-(-cal.nsamples // cal.nproc)} windows on the busiest), {cal.shots} shots\n"
            f"memory per rank; peak = runtime + weights + the larger phase (passes: factors + "
            f"activations; solver: factors kept + float64 work)\n")
    cols = ("strategy", "weights+masks", "factors", "inverses", "activations", "peak/rank", "phase", "passes/shot",
            "passes")
    rows = [(e.strategy, _size(e.weights_mb), _size(e.factors_mb), _size(e.inverses_mb),
             _size(e.activations_mb), _size(e.peak_mb), e.phase, e.passes_per_shot, str(e.passes))
            for e in estimates]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
    line = "  ".join(f"{{:{w}}}" for w in widths)
    return head + "\n".join([line.format(*cols), *(line.format(*r) for r in rows)])


def run(args: argparse.Namespace) -> int:
    """Print the plan."""
    from llm_surgeon.run.plan import load_config, model_shape, plan

    cal = _calibration(args)
    strategies = _strategies(args)
    model = model_shape(load_config(args.model, args.trust_remote_code), layers=args.layers,
                        trust_remote_code=args.trust_remote_code)
    estimates = plan(model, strategies, cal)
    if args.json:
        import json

        payload = {"model": args.model, "layers": model.layers, "parameters": model.parameters,
                   "calibration": {"nsamples": cal.nsamples, "seqlen": cal.seqlen,
                                   "batch_size": cal.batch_size, "nproc": cal.nproc, "shots": cal.shots},
                   "estimates": [e.to_dict() for e in estimates]}
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
    else:
        print(_table(model, cal, estimates, args.model))
    return 0
