"""The ``llm-surgeon`` command line.

Each subcommand lives in its own module ``llm_surgeon.cli.<name>`` that defines
``add_parser(subparsers)``; the parser it adds sets ``func`` to the command's
``run(args) -> int``. To add a command, create the module and append its name to
:data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import traceback
from collections.abc import Sequence

from llm_surgeon.errors import ConfigError, PluginError, SurgeonError, UnsupportedArchitectureError

#: Subcommand modules under ``llm_surgeon.cli``, in the order ``--help`` lists them.
COMMANDS: tuple[str, ...] = (
    "quickstart", "eval", "prune", "export", "plugins", "compare", "report", "data", "curvature",
    "curvature_figure",
)

#: Exit codes.
EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_PLUGIN, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("llm-surgeon")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one subparser per entry of :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(
        prog="llm-surgeon",
        description="Prune large language models with Kronecker-factored curvature (The LLM Surgeon).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="print only the final summary (errors still go to stderr); implies --no-progress")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in COMMANDS:
        module = importlib.import_module(f"llm_surgeon.cli.{name}")
        module.add_parser(subparsers)
    return parser


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.ERROR if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("llm_surgeon").setLevel(level)
    if verbose < 2:
        # transformers and friends are chatty at INFO.
        for name in ("transformers", "datasets", "huggingface_hub", "urllib3", "filelock", "lm-eval",
                     "lm_eval"):
            logging.getLogger(name).setLevel(max(level, logging.WARNING))
    if quiet:
        import warnings

        warnings.filterwarnings("ignore")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # read by transformers at import


def _notes(exc: BaseException) -> str:
    """The notes the runner added to ``exc`` (what was kept, how to resume), as ``; ...``."""
    return "".join(f"; {note}" for note in getattr(exc, "__notes__", ()))


def _unexpected(exc: Exception, verbose: int) -> str:
    """One line for an exception llm-surgeon did not raise on purpose (plugin named)."""
    from llm_surgeon.registry.blame import describe
    from llm_surgeon.registry.registry import loaded_registry

    if verbose:
        traceback.print_exception(exc, file=sys.stderr)
    hint = "" if verbose else " (-v shows the traceback)"
    return describe(exc, loaded_registry()) + _notes(exc) + hint


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 1 failure, 2 bad input, 3 plugin
    error, 130 interrupted)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or an argparse usage error (code 2)
        return int(exc.code or 0) if not isinstance(exc.code, str) else EXIT_USAGE
    _setup_logging(args.verbose, args.quiet)
    if args.quiet and hasattr(args, "no_progress"):
        args.no_progress = True
    try:
        return int(args.func(args) or 0)
    except (ConfigError, UnsupportedArchitectureError) as exc:
        print(f"llm-surgeon: error: {exc}{_notes(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except PluginError as exc:
        print(f"llm-surgeon: plugin error: {exc}{_notes(exc)}", file=sys.stderr)
        return EXIT_PLUGIN
    except SurgeonError as exc:
        print(f"llm-surgeon: {type(exc).__name__}: {exc}{_notes(exc)}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt as exc:
        print(f"llm-surgeon: interrupted{_notes(exc)}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as exc:
        print(f"llm-surgeon: error: {exc}{_notes(exc)}", file=sys.stderr)
        return EXIT_FAILURE
    except Exception as exc:
        print(f"llm-surgeon: {_unexpected(exc, args.verbose)}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
