"""``llm-surgeon report``: a Markdown report with figures of one or several runs."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``report`` subcommand."""
    p = subparsers.add_parser(
        "report",
        help="Markdown report with figures of one or several runs",
        description="Write DIR/report.md and DIR/figures/: a table of the runs (method, structure, "
        "sizes, perplexities, time, memory), the fraction of weights kept per layer depth and per "
        "module role, perplexity per shot, and a comparison folder's cross-domain "
        "matrices. OUT is a run folder (report.json), a `compare` folder (compare.json) or a "
        "report / bench record JSON file.",
    )
    p.add_argument("runs", nargs="+", metavar="OUT", help="run or comparison folders, or run JSON files")
    p.add_argument("--out", metavar="DIR", default="report", help="report folder (default: ./report)")
    p.add_argument("--title", default="Pruning report", help="the report's title")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Write the report and print its path."""
    from llm_surgeon.analysis.report import write_report

    print(write_report(args.runs, args.out, title=args.title))
    return 0
