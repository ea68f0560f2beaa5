"""Command line of the benchmark suite.

::

    python -m bench list [PROFILE]
    python -m bench run PROFILE [--only PATTERN] [--dry-run] [--force] [--model PATH]
                                [--data-dir DIR] [--device DEV] [--results DIR]
    python -m bench render [--results DIR] [--profile NAME ...]
    python -m bench deploy {prune,measure,render} ...   (see bench/deploy.py)
    python -m bench passes [--profile cpu] [--rounds N] [--data-dir DIR]
    python -m bench chunks [--factors FILE] [--layers 2,14,27] [--variants ...]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from bench import chunks, passes, profiles, records, render, runner

#: Environment variable with a local WikiText-2 folder, used when ``--data-dir`` is not given.
DATA_DIR_ENV = "BENCH_DATA_DIR"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p_list = sub.add_parser("list", help="list the profiles, or the runs of one profile")
    p_list.add_argument("profile", nargs="?", choices=profiles.names())
    p_list.add_argument("--results", type=Path, default=runner.DEFAULT_RESULTS)

    p_run = sub.add_parser("run", help="run a profile, appending one JSON record per run")
    p_run.add_argument("profile", choices=profiles.names())
    p_run.add_argument("--only", metavar="PATTERN",
                       help="run ids to include: comma-separated globs or substrings")
    p_run.add_argument("--dry-run", action="store_true", help="validate and print the plan only")
    p_run.add_argument("--force", action="store_true", help="rerun runs that already have a record")
    p_run.add_argument("--model", metavar="PATH", help="override the model (folder, .gguf, hub id)")
    p_run.add_argument("--data-dir", metavar="DIR", default=os.environ.get(DATA_DIR_ENV),
                       help=f"local WikiText-2 folder (default: ${DATA_DIR_ENV}, else the hub)")
    p_run.add_argument("--device", help="override the device (cpu, cuda, cuda:1...)")
    p_run.add_argument("--results", type=Path, default=runner.DEFAULT_RESULTS,
                       help="results folder (default: bench/results)")
    p_run.add_argument("--in-process", action="store_true",
                       help="run in this process instead of one fresh process per run")
    p_run.add_argument("--timeout", type=float, metavar="SECONDS", help="kill runs after this long")
    p_run.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p_run.add_argument("--no-render", action="store_true", help="do not update RESULTS.md/figures")

    p_render = sub.add_parser("render", help="write RESULTS.md and figures from stored records")
    p_render.add_argument("--results", type=Path, default=runner.DEFAULT_RESULTS)
    p_render.add_argument("--profile", action="append", help="only these profiles (repeatable)")
    p_render.add_argument("--readme", type=Path, metavar="FILE",
                          help="also rewrite the '<!-- bench:PROFILE:start/end -->' blocks of FILE "
                               "with each profile's table and figures")
    _deploy_parser(sub)
    passes.add_parser(sub, runner.DEFAULT_RESULTS, DATA_DIR_ENV)
    chunks.add_parser(sub, runner.DEFAULT_RESULTS, DATA_DIR_ENV)
    return parser


def _deploy_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("deploy", help="size, memory and speed of dense, zeroed and compact models")
    p.add_argument("action", choices=["prune", "measure", "render"])
    p.add_argument("--work", type=Path, help="folder of the zeroed, dense and compact models")
    p.add_argument("--pruned", action="append", metavar="NAME=DIR",
                   help="a zeroed model to measure (default: the DEPLOY_RUNS found in --work)")
    p.add_argument("--model", default=profiles.DEFAULT_MODEL, help="the dense model (smollm2-135m)")
    p.add_argument("--data-dir", metavar="DIR", default=os.environ.get(DATA_DIR_ENV))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--windows", type=int, default=64, help="evaluation windows for the logit check")
    p.add_argument("--results", type=Path, default=runner.DEFAULT_RESULTS)
    p.add_argument("--readme", type=Path, metavar="FILE", help="render: also the README's deploy block")


def _cmd_deploy(args: argparse.Namespace) -> int:
    from bench import deploy, deploy_render

    if args.action == "render":
        print(deploy_render.render(args.results, args.readme))
        return 0
    if args.work is None:
        print("--work is required", file=sys.stderr)
        return 2
    args.work.mkdir(parents=True, exist_ok=True)
    if args.action == "prune":
        print("\n".join(deploy.prune_all(args.work, args.data_dir, args.model)))
        return 0
    pruned = dict(item.split("=", 1) for item in args.pruned or [])
    if not pruned:
        pruned = {n: str(args.work / n) for n in deploy.DEPLOY_RUNS if (args.work / n / "report.json").is_file()}
    if not pruned:
        print(f"no zeroed model in {args.work}; run `deploy prune` or give --pruned", file=sys.stderr)
        return 2
    path = deploy.measure(args.work, {n: Path(d) for n, d in pruned.items()}, dense_spec=args.model,
                          data_dir=args.data_dir, threads=args.threads, repeats=args.repeats,
                          windows=args.windows, results_dir=args.results)
    print(path)
    deploy_render.render(args.results)
    print(deploy_render.table(deploy.latest(args.results)))
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    if args.profile is None:
        for name in profiles.names():
            profile = profiles.get(name)
            print(f"{name:8s} {len(profile.runs):3d} runs  {profile.description}")
        return 0
    planned = runner.plan(profiles.expand(profiles.get(args.profile)), args.results, validate=False)
    for item in planned:
        c = item.run.config
        state = "done" if item.skip else "pending"
        print(f"{item.run.id:32s} {state:8s} {c['method']:10s} {c['structure']:8s} "
              f"{c['target_size']:<5g} shots={c['shots']}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    profile = profiles.get(args.profile)
    runs = runner.select(profiles.expand(profile, model=args.model, data_dir=args.data_dir,
                                         device=args.device), args.only)
    if not runs:
        print(f"no run of profile {args.profile!r} matches {args.only!r}", file=sys.stderr)
        return 2
    planned = runner.plan(runs, args.results, force=args.force)
    if args.dry_run:
        bad = 0
        for item in planned:
            state = "invalid" if item.error else ("skip" if item.skip else "run")
            bad += item.error is not None
            print(f"{state:7s} {item.run.id:32s} key={item.key}"
                  + (f"  {item.error}" if item.error else ""))
        print(f"{len(planned)} run(s): {sum(not p.skip for p in planned)} to run, {bad} invalid")
        return 1 if bad else 0
    options = runner.RunOptions(results_dir=args.results, force=args.force, isolate=not args.in_process,
                                progress=not args.no_progress, timeout=args.timeout)
    new = runner.execute(planned, options)
    if not args.no_render:
        render.render(args.results)
    recs = render.order(records.latest(records.load_all(args.results), profile.name), profile.name)
    wanted = {r.id for r in runs}
    print(render.table([r for r in recs if r["run_id"] in wanted]))
    failed = sum(r["status"] != "ok" for r in new)
    if failed:
        print(f"{failed} of {len(new)} run(s) failed", file=sys.stderr)
    return 1 if failed else 0


def _cmd_render(args: argparse.Namespace) -> int:
    path = render.render(args.results, args.profile, readme=args.readme)
    print(path)
    if args.readme:
        print(args.readme)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m bench``; returns the exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    commands = {"list": _cmd_list, "run": _cmd_run, "render": _cmd_render, "deploy": _cmd_deploy,
                "passes": passes.main, "chunks": chunks.main}
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
