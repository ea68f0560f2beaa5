"""``llm-surgeon compare``: a matrix of methods × structures × target sizes on one model.

Every combination is an ordinary run of :func:`llm_surgeon.run.runner.prune` with the same
calibration and evaluation settings, so all methods see the same calibration windows
(they are drawn from the seeded split, identically for every run) and the same test
windows. The dense perplexity is evaluated once and reused through the runner's
perplexity cache (a private cache in ``--out`` when the user's cache is switched off).

By default each run is a separate process, so that its peak memory is its own.
``compare.json`` and ``compare.md`` in ``--out`` are rewritten after every run; each
run's ``report.json``, ``masks.safetensors`` and ``figures/`` are kept under ``runs/``.

With ``--calib-data A,B,C`` (and ``--eval-data``), every combination is run once per
calibration dataset, each pruned model is evaluated on every evaluation dataset, and
``domains.json``, ``domains.md`` and ``figures/domains.png`` hold the cross-perplexity
and mask-equivalence matrices (:mod:`llm_surgeon.run.cross_domain`).
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
from pathlib import Path
from typing import Any

from llm_surgeon.analysis.run_figures import write_run_figures
from llm_surgeon.cli.options import add_bos_argument, add_data_arguments, comma_list, parse_options
from llm_surgeon.data.mixture import text_dataset
from llm_surgeon.errors import ConfigError
from llm_surgeon.pruning.nm import parse_nm
from llm_surgeon.run.comparison import render_markdown, summarize, write_comparison
from llm_surgeon.run.config import RunConfig
from llm_surgeon.run.isolated import run_isolated

logger = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``compare`` subcommand."""
    p = subparsers.add_parser(
        "compare",
        help="compare methods × structures × target sizes",
        description="Prune the same model with several methods, structures and target sizes "
        "(one calibration set, one dense evaluation) and write compare.json and compare.md "
        "(perplexity, achieved size, pruning seconds, peak memory) to --out.",
    )
    p.add_argument("model", metavar="MODEL", help="alias (smollm2-135m), local folder, .gguf file or hub id")
    p.add_argument("--methods", type=comma_list, required=True,
                   help="comma-separated methods, e.g. sparsegpt,wanda,surgeon,magnitude")
    p.add_argument("--structures", type=comma_list, default=["element"],
                   help="comma-separated structures, e.g. element,2:4,row-col (default: element)")
    p.add_argument("--target-sizes", type=lambda t: [float(x) for x in comma_list(t)], default=[0.5],
                   help="comma-separated fractions kept (default: 0.5); N:M structures use 1 - N/M")
    p.add_argument("--shots", default=None, metavar="N|METHOD=N,...",
                   help="shots for every method, or per method (default: the method's own "
                   "default, 1 for the layer-wise baselines, else 5)")
    p.add_argument("--method-option", action="append", metavar="METHOD:KEY=VALUE",
                   help="an option for one method, e.g. sparsegpt:blocksize=64")
    d = p.add_argument_group("data")
    add_data_arguments(d)
    add_bos_argument(d)
    d.add_argument("--calib-split", help="calibration split (default: train, else validation)")
    d.add_argument("--eval-split", help="evaluation split (default: test)")
    d.add_argument("--nsamples", type=int, help="calibration windows (default: 32)")
    d.add_argument("--seqlen", type=int, help="tokens per window (default: 512)")
    d.add_argument("--batch-size", type=int, help="windows per forward pass")
    d.add_argument("--seed", type=int, help="random seed of the calibration windows")
    d.add_argument("--eval-windows", type=int, metavar="N", help="evaluate on the first N windows only")
    d.add_argument("--calib-data", type=comma_list, metavar="A,B,...",
                   help="prune once per calibration dataset (e.g. wikitext2,python-stdlib,manpages-de) "
                   "and write the cross-perplexity and mask-equivalence matrices")
    d.add_argument("--eval-data", type=comma_list, metavar="A,B,...",
                   help="evaluate every pruned model on each of these datasets (default: --calib-data)")
    r = p.add_argument_group("run")
    r.add_argument("--device", help="cpu (default), cuda, cuda:1...")
    r.add_argument("--dtype", help="model dtype while pruning (default: float32)")
    r.add_argument("--out", metavar="DIR", required=True, help="output folder")
    r.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    r.add_argument("--save-models", action="store_true",
                   help="also save every pruned model (always with --calib-data/--eval-data: the "
                   "models are evaluated on every dataset after the runs)")
    r.add_argument("--in-process", action="store_true",
                   help="run all combinations in this process (faster start; peak memory is then "
                   "the process peak so far)")
    r.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def _shots(spec: str | None, methods: list[str]) -> dict[str, int | None]:
    """Shots per method from ``N`` or ``method=N,...`` (``None``: the method's default)."""
    shots: dict[str, int | None] = dict.fromkeys(methods)
    if not spec:
        return shots
    try:
        if "=" not in spec:
            return dict.fromkeys(methods, int(spec))
        for item in comma_list(spec):
            name, _, value = item.partition("=")
            if name.strip() not in shots:
                raise ConfigError(f"--shots names method {name.strip()!r}, which is not in --methods")
            shots[name.strip()] = int(value)
    except ValueError:
        raise ConfigError(f"--shots expects N or METHOD=N,...; got {spec!r}") from None
    return shots


def _method_options(items: list[str] | None, methods: list[str]) -> dict[str, dict[str, Any]]:
    options: dict[str, dict[str, Any]] = {m: {} for m in methods}
    for item in items or []:
        method, sep, rest = item.partition(":")
        if not sep or method not in options:
            raise ConfigError(f"--method-option expects METHOD:KEY=VALUE with METHOD in --methods; got {item!r}")
        options[method].update(parse_options([rest], "--method-option"))
    return options


def _base(args: argparse.Namespace) -> dict[str, Any]:
    """Settings shared by every run (a nested dict for :meth:`RunConfig.from_dict`)."""
    base: dict[str, Any] = {"model": args.model}
    cal: dict[str, Any] = {}
    ev: dict[str, Any] = {}
    cal_data: dict[str, Any] = {"split": args.calib_split or "train"}
    ev_data: dict[str, Any] = {"split": args.eval_split or "test"}
    if args.data:  # a chat calibration or mixture evaluates on its text dataset (default wikitext2)
        cal_data["dataset"] = args.data
        if text_dataset(args.data):
            ev_data["dataset"] = text_dataset(args.data)
    for data in (cal_data, ev_data):
        if args.data_dir:
            data["data_dir"] = args.data_dir
    cal["data"], ev["data"] = cal_data, ev_data
    for key, value in (("nsamples", args.nsamples), ("seed", args.seed)):
        if value is not None:
            cal[key] = value
    for section in (cal, ev):
        if args.seqlen is not None:
            section["seqlen"] = args.seqlen
        if args.batch_size is not None:
            section["batch_size"] = args.batch_size
        if args.bos is not None:
            section["bos"] = args.bos
    if args.eval_windows is not None:
        ev["windows"] = args.eval_windows
    base["calibration"], base["evaluation"] = cal, ev
    for key in ("device", "dtype"):
        if getattr(args, key):
            base[key] = getattr(args, key)
    return base


def _slug(method: str, structure: str, target: float, calib: str | None = None) -> str:
    slug = f"{method}-{structure.replace(':', 'of')}-{target:g}"
    return slug if calib is None else f"{slug}-calib-{calib}"


def plan(args: argparse.Namespace) -> list[dict[str, Any]]:
    """One entry per combination: ``{"method", "structure", "target_size", "config" | "skipped"}``.

    Unknown plugin names and invalid shared settings raise :class:`ConfigError`; a
    combination the method does not support (e.g. a structure) is marked skipped.
    """
    from llm_surgeon.registry.registry import Kind, get_registry
    from llm_surgeon.run.cross_domain import domain_lists, domain_run
    from llm_surgeon.run.validate import method_attribute, validate_run

    registry = get_registry()
    for method in args.methods:
        registry.get(Kind.METHOD, method)  # did-you-mean for typos
    shots = _shots(args.shots, args.methods)
    options = _method_options(args.method_option, args.methods)
    base = _base(args)
    calib_data, eval_data = domain_lists(args.calib_data, args.eval_data, args.data)
    runs_dir = Path(args.out) / "runs"
    entries: list[dict[str, Any]] = []
    checked_model = False
    for method in args.methods:
        record = registry.get(Kind.METHOD, method)
        method_shots = shots[method]
        if method_shots is None:
            method_shots = method_attribute(record, None, "default_shots", None)
        for structure in args.structures:
            nm = parse_nm(structure)
            sizes = [1.0 - nm[0] / nm[1]] if nm else args.target_sizes
            for target, calib in itertools.product(sizes, calib_data or [None]):
                data = dict(base, method=method, structure=structure, target_size=target,
                            method_options=options[method], save_model=bool(args.save_models),
                            out=str(runs_dir / _slug(method, structure, target, calib)))
                if method_shots is not None:
                    data["shots"] = method_shots
                entry: dict[str, Any] = {"method": method, "structure": structure, "target_size": target}
                if calib is not None:
                    data = domain_run(data, calib, eval_data, splits=(args.calib_split, args.eval_split),
                                      data_dir=args.data_dir)
                    entry.update(calib_data=calib, eval_data=data["evaluation"]["data"]["dataset"])
                try:
                    config = RunConfig.from_dict(data)
                    validate_run(config, registry, check_model=not checked_model)
                    checked_model = True
                    entry.update(config=config, shots=config.shots)
                except ConfigError as exc:
                    entry.update(status="skipped", error=str(exc))
                entries.append(entry)
    if entries and all(e.get("status") == "skipped" for e in entries):
        raise ConfigError(f"no combination can run; first problem: {entries[0]['error']}")
    return entries


def compare(args: argparse.Namespace) -> dict[str, Any]:
    """Run the matrix described by ``args`` and return the ``compare.json`` content."""
    from llm_surgeon.util.io import check_output_folder
    from llm_surgeon.util.resources import library_versions

    out = check_output_folder(args.out, overwrite=args.overwrite)
    entries = plan(args)
    out.mkdir(parents=True, exist_ok=True)
    if os.environ.get("LLM_SURGEON_CACHE", "").lower() in {"off", "0", "false", "no"}:
        os.environ["LLM_SURGEON_CACHE"] = str(out / ".ppl-cache")  # still one dense evaluation
    first = next(e["config"] for e in entries if "config" in e)
    result: dict[str, Any] = {
        "model": args.model,
        "settings": {
            "calibration": first.to_dict()["calibration"],
            "evaluation": first.to_dict()["evaluation"],
            "device": first.device,
            "dtype": first.dtype,
            "in_process": bool(args.in_process),
        },
        "dense_ppl": None,
        "runs": [],
        "versions": library_versions(),
    }
    for entry in entries:
        row = {k: entry[k] for k in ("method", "structure", "target_size", "calib_data", "eval_data")
               if k in entry}
        if "config" not in entry:
            row.update(status="skipped", error=entry["error"])
        else:
            config = entry["config"]
            logger.info("running %s / %s / %.4g", row["method"], row["structure"], row["target_size"])
            outcome = run_isolated(config, in_process=args.in_process, progress=not args.no_progress,
                               scratch=out)
            if "report" in outcome:
                row.update(summarize(outcome["report"]), report=str(Path(config.out) / "report.json"),
                           out=config.out)
                write_run_figures(config.out, outcome["report"])
                if "peak_gpu_mb" in outcome["report"]:
                    row["peak_gpu_mb"] = outcome["report"]["peak_gpu_mb"]
                if result["dense_ppl"] is None:
                    result["dense_ppl"] = row["ppl_before"]
                    result["data_sources"] = {
                        section: outcome["report"].get(section, {}).get("source")
                        for section in ("calibration", "evaluation")}
            else:
                row.update(status="failed", shots=config.shots, error=outcome["error"])
        result["runs"].append(row)
        write_comparison(out, result)
    from llm_surgeon.run.cross_domain import domain_lists

    calib_data, eval_data = domain_lists(args.calib_data, args.eval_data, args.data)
    if calib_data is not None:
        result["domains"] = _domains(args, out, result, first, calib_data, eval_data)
    return result


def _domains(args: argparse.Namespace, out: Path, result: dict[str, Any], first: RunConfig,
             calib_data: list[str], eval_data: list[str]) -> dict[str, Any]:
    """Evaluate every pruned model on every dataset; write the matrices and their figure."""
    from llm_surgeon.analysis.domain_figure import save_domain_figure
    from llm_surgeon.run.cross_domain import cross_domain, data_for, write_domains

    evals = [data_for(d, args.eval_split or "test", args.data_dir) for d in eval_data]
    logger.info("evaluating %d pruned models on %s", len(result["runs"]), ", ".join(eval_data))
    domains = cross_domain(result, first, calib_data, evals, progress=not args.no_progress)
    write_domains(out, domains)
    save_domain_figure(domains, out / "figures" / "domains.png")
    return domains


def run(args: argparse.Namespace) -> int:
    """Run the comparison; exit code 1 if any combination failed."""
    from llm_surgeon.dist import world_size_from_env

    if world_size_from_env() > 1:
        raise ConfigError("compare runs its combinations in separate processes of its own; under "
                          "torchrun, run each one with `llm-surgeon prune`")
    result = compare(args)
    print(render_markdown(result))
    if "domains" in result:
        from llm_surgeon.run.cross_domain import render_markdown as render_domains

        print(render_domains(result["domains"]))
    return 1 if any(r["status"] == "failed" for r in result["runs"]) else 0
