"""``llm-surgeon data``: the datasets, their licences and caches; fetch the ones that need it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``data`` subcommand with ``list`` and ``fetch``."""
    p = subparsers.add_parser(
        "data",
        help="list datasets; fetch the German man pages (manpages-de)",
        description="Datasets for calibration and evaluation. `data list` shows each with its "
        "licence and whether it is ready; `data fetch manpages-de` downloads the Debian package "
        "(apt-get download), unpacks it (dpkg-deb -x) and renders the pages (man) into the cache.",
    )
    sub = p.add_subparsers(dest="data_command", metavar="ACTION")
    sub.required = True
    p_list = sub.add_parser("list", help="datasets, licences and cache state")
    p_list.add_argument("--json", action="store_true", help="print as JSON")
    p_list.set_defaults(func=run_list)
    p_fetch = sub.add_parser("fetch", help="fetch a dataset into the cache (manpages-de)")
    p_fetch.add_argument("dataset", choices=["manpages-de"])
    p_fetch.add_argument("--cache", metavar="DIR", default=None,
                         help="dataset cache root (default: $LLM_SURGEON_DATA or ~/.cache/llm-surgeon/data); "
                         "loading reads $LLM_SURGEON_DATA, so set it to the same folder")
    p_fetch.add_argument("--deb", metavar="FILE", default=None,
                         help="use this manpages-de_*.deb instead of `apt-get download`")
    p_fetch.add_argument("--force", action="store_true", help="fetch again although cached")
    p_fetch.add_argument("--no-progress", action="store_true", help="no progress bar")
    p_fetch.set_defaults(func=run_fetch)


def _rows() -> list[dict[str, str]]:
    from llm_surgeon.data.domains import LICENCES
    from llm_surgeon.data.manpages import cache_dir, check_fetched
    from llm_surgeon.errors import ConfigError

    rows = [
        {"dataset": "wikitext2", "licence": "CC BY-SA 3.0",
         "state": "--data-dir with wiki.*.raw, else the Hugging Face hub"},
        {"dataset": "text", "licence": "yours", "state": "--data-dir with local text files"},
        {"dataset": "python-stdlib", "licence": LICENCES["python-stdlib"], "state": "ready"},
    ]
    try:
        check_fetched()
        state = f"ready ({cache_dir()})"
    except ConfigError:
        state = "not fetched: llm-surgeon data fetch manpages-de"
    rows.append({"dataset": "manpages-de", "licence": LICENCES["manpages-de"], "state": state})
    return rows


def run_list(args: argparse.Namespace) -> int:
    """Print every dataset with its licence and whether it can be loaded."""
    rows = _rows()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        print(f"{row['dataset']:14s} {row['licence']:52s} {row['state']}")
    return 0


def run_fetch(args: argparse.Namespace) -> int:
    """Fetch ``manpages-de`` and print its manifest."""
    from llm_surgeon.data.manpages import cache_dir, fetch

    root = Path(args.cache).expanduser() if args.cache else None
    manifest = fetch(root, deb=Path(args.deb) if args.deb else None, progress=not args.no_progress,
                     force=args.force)
    parts = ", ".join(f"{part} {info['pages']} pages ({info['characters']:,} characters, "
                      f"sha256 {info['sha256']})" for part, info in manifest["parts"].items())
    print(f"{manifest['dataset']} from {manifest['deb']} in {cache_dir(root)}: {parts}")
    return 0
