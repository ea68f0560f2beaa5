"""The README's scale table: the ``scale`` records extrapolated to all layers and N ranks.

``python -m bench.scale_table [--layers 32] [--nproc 1,2,4,8] [--nsamples 32] [--seqlen 512]``
reads the newest successful ``scale`` records (one shot of surgeon row-col and of
element on 2 layers of Llama-2-7B's widths) and prints, for a model of ``--layers``
such layers on each rank count, the estimated seconds per shot (calibration passes
scale with tokens per rank and layers; the solve with layers over ranks, the owner
assignment balancing whole modules), the planned memory per rank
(:mod:`llm_surgeon.run.plan`) and the bytes each rank contributes to collectives per
shot (upper triangles of ``G`` and ``A``, and the owners' broadcast weights and masks).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from bench import profiles, records, runner


def per_layer(record: dict[str, Any]) -> dict[str, float]:
    """Seconds per layer and per calibration token of a scale record's first shot."""
    shot = record["shot_log"][0]
    layers = len({m["layer"] for m in record["modules"]})
    tokens = record["calibration"]["nsamples"] * record["calibration"]["seqlen"]
    return {"passes_per_token_layer": shot["seconds"]["passes"] / layers / tokens,
            "solver_per_layer": shot["seconds"]["solver"] / layers, "layers": layers, "tokens": tokens,
            "peak_rss_mb": record["peak_rss_mb"]}


def _traffic_mb(model: Any, nproc: int) -> float:
    """MiB a rank contributes per shot: upper triangles of the factors and the weights it receives."""
    if nproc == 1:
        return 0.0
    triangles = sum(n * (n + 1) / 2 for m in model.modules for n in (m.d_out, m.d_in)) * 4
    weights = sum(m.d_out * m.d_in * (4 + 1) for m in model.modules)  # float32 weights and uint8 masks
    return (triangles + weights) / 2**20


def table(recs: dict[str, dict[str, Any]], layers: int, nprocs: list[int], nsamples: int, seqlen: int) -> str:
    """The markdown table (one row per rank count)."""
    from llm_surgeon.run import plan as P

    model = P.model_shape(P.load_config(profiles.SCALE_MODEL), layers=layers)
    rates = {name: per_layer(r) for name, r in recs.items()}
    tokens = nsamples * seqlen
    rows = ["| ranks | passes s/shot | row-col solver s/shot | element solver s/shot | row-col peak/rank "
            "| element peak/rank | collectives MiB/shot/rank |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for n in nprocs:
        cal = P.Calibration(nsamples=nsamples, seqlen=seqlen, nproc=n)
        peaks = {s: P.estimate(model, P.resolve_strategy("surgeon", None, s), cal).peak_mb / 1024
                 for s in ("row-col", "element")}
        rc, el = rates["surgeon-rowcol-shot1"], rates["surgeon-element-shot1"]
        passes = rc["passes_per_token_layer"] * layers * -(-tokens // n)
        rows.append(f"| {n} | {passes:,.0f} | {rc['solver_per_layer'] * layers / n:,.0f} | "
                    f"{el['solver_per_layer'] * layers / n:,.0f} | {peaks['row-col']:.1f} GiB | "
                    f"{peaks['element']:.1f} GiB | {_traffic_mb(model, n):,.0f} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale_table", description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=32)
    parser.add_argument("--nproc", default="1,2,4,8")
    parser.add_argument("--nsamples", type=int, default=32)
    parser.add_argument("--seqlen", type=int, default=512)
    parser.add_argument("--results", type=Path, default=runner.DEFAULT_RESULTS)
    args = parser.parse_args(argv)
    recs = {r["run_id"]: r for r in records.latest(records.load_all(args.results), "scale")
            if r["status"] == "ok"}
    missing = {"surgeon-rowcol-shot1", "surgeon-element-shot1"} - set(recs)
    if missing:
        print(f"no successful scale record for {', '.join(sorted(missing))}", file=sys.stderr)
        return 1
    for name, r in sorted(recs.items()):
        rate = per_layer(r)
        print(f"{name}: passes {rate['passes_per_token_layer'] * 1e3:.2f} ms per token and layer, solver "
              f"{rate['solver_per_layer']:.0f} s per layer, peak RSS {rate['peak_rss_mb'] / 1024:.2f} GiB")
    print(table(recs, args.layers, [int(n) for n in args.nproc.split(",")], args.nsamples, args.seqlen))
    return 0


if __name__ == "__main__":
    sys.exit(main())
