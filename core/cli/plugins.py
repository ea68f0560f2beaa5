"""``llm-surgeon plugins``: list every registered curvature, structure, method and adapter."""

from __future__ import annotations

import argparse
import json
import sys

from llm_surgeon.registry.registry import Kind, get_registry


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``plugins`` subcommand."""
    parser = subparsers.add_parser(
        "plugins",
        help="list registered plugins",
        description="List every registered item: kind, name, one-line description, "
        "providing distribution and version.",
    )
    parser.add_argument("--json", action="store_true", help="print JSON (a list of objects)")
    parser.add_argument(
        "--kind", choices=[k.value for k in Kind], default=None, help="only items of this kind"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the registry."""
    records = [r for r in get_registry().records() if args.kind is None or r.kind.value == args.kind]
    if args.json:
        json.dump([r.to_json() for r in records], sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    rows = [(r.kind.value, r.name, f"{r.distribution} {r.version}".strip(), r.description) for r in records]
    header = ("KIND", "NAME", "DISTRIBUTION", "DESCRIPTION")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(3)]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths, strict=True)) + "  " + row[3])
    return 0
