"""``llm-surgeon curvature-figure``: the Fisher of a tiny layer beside its Kronecker approximations."""

from __future__ import annotations

import argparse
import json


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``curvature-figure`` subcommand."""
    p = subparsers.add_parser(
        "curvature-figure",
        help="draw the Fisher of a tiny layer beside K-FAC and nearest-K-FAC (ranks 1-3)",
        description="On a tiny random model: the exact token-level Fisher of one layer, classic "
        "K-FAC and nearest-K-FAC of ranks 1, 2, 3, each titled with its RMSE.",
    )
    p.add_argument("--out", default="kronecker.png", help="image file (default: kronecker.png)")
    p.add_argument("--family", default="llama", help="tiny model family: llama, llama-bias, opt... (default: llama)")
    p.add_argument("--module", default=None, help="qualified layer name (default: layer 0's v projection)")
    p.add_argument("--iterations", type=int, default=30, help="power iterations of nearest-K-FAC (default: 30)")
    p.add_argument("--seed", type=int, default=0, help="seed of the model and tokens")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Save the figure and print the errors as JSON."""
    from llm_surgeon.analysis.kronecker_figure import save_figure

    module = args.module
    if module is None:
        module = "model.decoder.layers.0.self_attn.v_proj" if args.family == "opt" else "model.layers.0.self_attn.v_proj"
    result = save_figure(args.out, family=args.family, module=module, iterations=args.iterations, seed=args.seed)
    print(json.dumps({"out": args.out, **result}, indent=2))
    return 0
