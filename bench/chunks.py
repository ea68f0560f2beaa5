"""How far the chunked element updates are from the joint optimum, on real K-FAC factors.

``python -m bench chunks`` estimates K-FAC on the calibration windows of a profile (or
reads factors saved by an earlier call, ``--factors FILE``), takes a few modules of each
shape, and replays on each the shots of an element or 2:4 run (one module alone, its
curvature fixed, candidates chosen by their single-weight costs on the live weights).
At every shot the same removal is solved by each variant, and the true quadratic cost
``1/2 dtheta^T F dtheta`` of its change is compared with the joint optimum:

* ``sequential-C`` / ``gauss-seidel-C``: the solver's sweeps with chunk size ``C``;
* ``joint``: the exact joint removal, from conjugate gradients on the dual system
  ``E_K F^-1 E_K^T alpha = theta_K`` (products ``G^-1 X A^-1`` only, Jacobi
  preconditioner) to a relative residual of ``1e-9`` (the direct joint solve,
  ``chunk_size=None``, only fits up to 8192 weights).

Times are CPU seconds of this process; run it with ``OMP_NUM_THREADS=1`` on a shared
machine. The trajectory of the shots follows the first variant.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

#: Modules studied by default: one early, middle and late layer, every distinct shape.
DEFAULT_LAYERS = (2, 14, 27)
DEFAULT_ROLES = ("q_proj", "k_proj", "gate_proj", "down_proj")


def joint_removal(theta: Tensor, removed: Tensor, g_inv: Tensor, a_inv: Tensor, *, tol: float = 1e-9,
                  max_iter: int = 5000) -> tuple[Tensor, int, float]:
    """The joint optimum by preconditioned conjugate gradients on the dual system.

    Returns:
        The new ``theta`` (zero on ``removed``), the iterations and the final relative residual.
    """
    flat = removed.flatten().nonzero().flatten()
    b = theta.flatten()[flat]
    diag = torch.outer(g_inv.diagonal(), a_inv.diagonal()).flatten()[flat]

    def apply(v: Tensor) -> Tensor:
        x = torch.zeros(theta.numel(), dtype=theta.dtype)
        x[flat] = v
        return (g_inv @ x.view_as(theta) @ a_inv).flatten()[flat]

    x = torch.zeros_like(b)
    r = b.clone()
    z = r / diag
    p, rz, norm_b = z.clone(), float(r @ z), float(b.norm())
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007 - read after the loop
        sp = apply(p)
        step = rz / float(p @ sp)
        x += step * p
        r -= step * sp
        if float(r.norm()) <= tol * norm_b:
            break
        z = r / diag
        rz, rz_old = float(r @ z), rz
        p = z + (rz / rz_old) * p
    scattered = torch.zeros(theta.numel(), dtype=theta.dtype)
    scattered[flat] = x
    new = theta - g_inv @ scattered.view_as(theta) @ a_inv
    new[removed] = 0.0
    return new, it, float(r.norm()) / norm_b


def _selection(structure: str, theta: Tensor, alive: Tensor, single: Tensor, size: float) -> Tensor:
    """The weights removed after a shot to ``size`` (old removals included)."""
    cost = torch.where(alive, single, torch.full_like(single, -1.0))
    k = round((1 - size) * theta.numel())
    if structure == "element":
        chosen = torch.zeros(theta.numel(), dtype=torch.bool)
        chosen[cost.flatten().argsort()[:k]] = True
        return chosen.view_as(theta)
    d_out, d_in = theta.shape
    values, pos = torch.topk(cost.view(d_out, d_in // 4, 4), 2, dim=2, largest=False)
    chosen = torch.zeros(values.numel(), dtype=torch.bool)
    chosen[values.flatten().argsort()[:k]] = True
    out = torch.zeros(d_out, d_in // 4, 4, dtype=torch.bool)
    out.scatter_(2, pos, chosen.view_as(values))
    return out.view(d_out, d_in)


def _variant(name: str) -> tuple[str, Any, bool]:
    """``(sweep, chunk size, transposed)`` of a variant name such as ``sequential-256`` or
    ``sequential-T-256`` (the sweep over columns: lines along the input dimension)."""
    sweep, _, chunk = name.rpartition("-")
    transposed = sweep.endswith("-T")
    return sweep.removesuffix("-T"), (chunk if chunk == "row" else int(chunk)), transposed


def study_module(name: str, g: Tensor, a: Tensor, w: Tensor, structure: str, variants: list[str],
                 shots: int, damping: tuple[float, float]) -> list[dict[str, Any]]:
    """Replay ``shots`` shots of ``structure`` on one module; one row per shot."""
    from llm_surgeon.curvature import KroneckerCurvature
    from llm_surgeon.solver import Damping, solver_for

    curvature = KroneckerCurvature(((g, a),), *w.shape)
    solver = solver_for(curvature, Damping(*damping))
    solver_t = solver_for(KroneckerCurvature(((a, g),), w.shape[1], w.shape[0]), Damping(*damping[::-1]))
    g_inv, a_inv = solver.g_inv, solver.a_inv
    theta = w.double().clone()
    alive = torch.ones_like(theta, dtype=torch.bool)
    single = None
    rows = []
    for shot in range(1, shots + 1):
        single = theta.square() / (2 * torch.outer(solver.g_inv_diag, solver.a_inv_diag))
        removed = _selection(structure, theta, alive, single, 1 - 0.5 * shot / shots)
        start = time.process_time()
        best, iters, residual = joint_removal(theta, removed, g_inv, a_inv)
        row: dict[str, Any] = {"module": name, "structure": structure, "shot": shot,
                               "removed": int(removed.sum()),
                               "joint": {"cost": solver.quadratic(best - theta), "iterations": iters,
                                         "residual": residual, "cpu_s": time.process_time() - start}}
        first = None
        for v in variants:
            sweep, chunk, transposed = _variant(v)
            start = time.process_time()
            if transposed:
                new_t, _ = solver_t.remove_elements(theta.T.contiguous(), removed.T.contiguous(),
                                                    chunk_size=chunk, sweep=sweep)
                new = new_t.T.contiguous()
                cost = solver.quadratic(new - theta)
            else:
                new, cost = solver.remove_elements(theta, removed, chunk_size=chunk, sweep=sweep)
            row[v] = {"cost": cost, "ratio": cost / row["joint"]["cost"], "cpu_s": time.process_time() - start}
            first = new if first is None else first
        rows.append(row)
        print(_line(row, variants), flush=True)
        theta, alive = first, ~removed
    return rows


def _line(row: dict[str, Any], variants: list[str]) -> str:
    parts = [f"{row['module']} {row['structure']} shot {row['shot']} ({row['removed']} removed):",
             f"joint {row['joint']['cost']:.4g} ({row['joint']['iterations']} it, {row['joint']['cpu_s']:.1f} s)"]
    parts += [f"{v} x{row[v]['ratio']:.3f} ({row[v]['cpu_s']:.1f} s)" for v in variants]
    return " ".join(parts)


def _factors(args: argparse.Namespace) -> dict[str, dict[str, Tensor]]:
    if args.factors and Path(args.factors).exists():
        return torch.load(args.factors)
    from bench import profiles
    from llm_surgeon.data import CalibrationConfig, DataConfig, calibration_windows
    from llm_surgeon.model import adapter_for, load_model
    from llm_surgeon.plugins.curvature.kfac import KFACCurvature

    base = profiles.get(args.profile).base["calibration"]
    cal = CalibrationConfig(data=DataConfig(dataset="wikitext2", data_dir=args.data_dir, split="validation"),
                            nsamples=base["nsamples"], seqlen=base["seqlen"], seed=base["seed"])
    model, tokenizer = load_model(args.model)
    windows, _ = calibration_windows(tokenizer, cal)
    modules = [pm for pm in adapter_for(model).prunable_modules(model)
               if int(pm.name.split(".")[2]) in args.layers and pm.name.split(".")[-1] in args.roles]
    result = KFACCurvature().estimate(model, modules, [windows[i : i + 1] for i in range(len(windows))])
    out = {pm.name: {"G": result.curvatures[pm.name].factors[0][0], "A": result.curvatures[pm.name].factors[0][1],
                     "W": pm.module.weight.detach().clone()} for pm in modules}
    if args.factors:
        torch.save(out, args.factors)
    return out


def add_parser(sub: Any, default_results: Path, data_env: str) -> None:
    """The ``chunks`` subcommand of ``python -m bench``."""
    import os

    p = sub.add_parser("chunks", help="chunked element updates against the joint optimum")
    p.add_argument("--profile", default="cpu")
    p.add_argument("--model", default=os.environ.get("BENCH_MODEL", "smollm2-135m"))
    p.add_argument("--data-dir", metavar="DIR", default=os.environ.get(data_env))
    p.add_argument("--factors", metavar="FILE", help="read (or write) the K-FAC factors here")
    p.add_argument("--layers", type=lambda s: [int(x) for x in s.split(",")], default=list(DEFAULT_LAYERS))
    p.add_argument("--roles", type=lambda s: s.split(","), default=list(DEFAULT_ROLES))
    p.add_argument("--structures", type=lambda s: s.split(","), default=["element", "2:4"])
    p.add_argument("--variants", type=lambda s: s.split(","),
                   default=["sequential-256", "gauss-seidel-256", "sequential-row", "sequential-T-256"])
    p.add_argument("--shots", type=int, default=5)
    p.add_argument("--results", type=Path, default=default_results)


def main(args: argparse.Namespace) -> int:
    """Run the study; 2 for bad arguments."""
    from llm_surgeon.pruning import SWEEPS

    bad = [v for v in args.variants if _variant(v)[0] not in SWEEPS]
    if bad:
        print(f"chunks: variants are SWEEP-CHUNK with SWEEP in {SWEEPS}, got {bad}")
        return 2
    factors = _factors(args)
    rows = []
    damping = (0.1, 0.01)  # the element and N:M structures' defaults
    for name, f in factors.items():
        if int(name.split(".")[2]) not in args.layers or name.split(".")[-1] not in args.roles:
            continue
        for structure in args.structures:
            rows += study_module(name, f["G"], f["A"], f["W"], structure, args.variants, args.shots, damping)
    folder = args.results / "chunks"
    folder.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = folder / f"chunks__{stamp}.json"
    path.write_text(json.dumps({"damping": damping, "variants": args.variants, "rows": rows,
                                "threads": torch.get_num_threads()}, indent=1) + "\n")
    print(path)
    return 0
