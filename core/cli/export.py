"""``llm-surgeon export``: turn a pruned (zeroed) folder into a physically smaller one.

Checks the architecture and the output folder before any weights are loaded; writes the
output atomically and prints the plan (per-layer MLP widths, heads, index-compressed Linears).
"""

from __future__ import annotations

import argparse
import logging
import sys

logger = logging.getLogger(__name__)

#: Export formats (``--format``).
FORMATS = ("compact",)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``export`` subcommand."""
    p = subparsers.add_parser(
        "export",
        help="write a pruned model in a physically smaller form",
        description="Export a pruned model folder (written by `llm-surgeon prune`, pruned weights "
        "exactly zero) as a compact Hugging Face folder: MLP units, heads, rows and columns "
        "that do not affect the logits are removed. Uniform results get a plain config of the "
        "original architecture; others load with trust_remote_code=True, or with "
        "llm_surgeon.load without it.",
    )
    p.add_argument("model", metavar="PRUNED_DIR", help="pruned model folder (or any model spec)")
    p.add_argument("--format", choices=FORMATS, default="compact", help="export format (compact)")
    p.add_argument("--out", metavar="DIR", required=True, help="output folder (written atomically)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.add_argument("--dtype", default="float32", help="dtype of the exported weights (float32)")
    p.add_argument("--trust-remote-code", action="store_true", help="allow model code from the checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print the plan as JSON on stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Check, load, export, print the plan."""
    from llm_surgeon.export import export_folder
    from llm_surgeon.util.progress import no_progress_bars
    from llm_surgeon.util.torch_util import torch_dtype

    torch_dtype(args.dtype)
    with no_progress_bars(args.no_progress):
        plan = export_folder(args.model, args.out, dtype=args.dtype, overwrite=args.overwrite,
                             trust_remote_code=args.trust_remote_code)
    if args.json:
        from llm_surgeon.util.io import to_json_text

        sys.stdout.write(to_json_text(plan.to_dict()))
    else:
        print(plan.summary())
        print(f"output         {args.out}")
    return 0
