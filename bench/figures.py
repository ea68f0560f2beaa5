"""Figures of benchmark records (matplotlib, Agg; no global pyplot state).

* :func:`ppl_vs_size`: test perplexity against target size, one line per method and
  one panel per structure (the paper's "interpolate model sizes" figure).
* :func:`ppl_vs_real_size`: test perplexity against the real (compact-export) size,
  one line per method and structure, for records that have one.
* :func:`sparsity`: remaining weights per layer depth and per module role for the
  ``surgeon`` runs (the paper's sparsity analysis).
* :func:`ppl_per_shot`: perplexity after every shot, for runs evaluated each shot.

Each function takes successful records and a path, writes a PNG and returns the
path, or returns ``None`` without writing when there is nothing to draw.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: Display order of module roles (Llama, then OPT).
ROLES = ("q", "k", "v", "o", "gate", "up", "down", "fc1", "fc2")
_STRUCTURE_ORDER = ("row-col", "element", "2:4")


def label(record: dict[str, Any]) -> str:
    """Legend label of a run: its method, with ``+LoRA`` when LoRA was on."""
    return record["method"] + ("+LoRA" if record.get("lora") else "")


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", metadata={"Software": None})
    return path


def _log_axis(ax, values: Sequence[float]) -> None:
    """Log-scale y axis; plain tick labels (``20``, ``50``) when the data spans < 2 decades."""
    import math

    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    ax.set_yscale("log")
    positive = [v for v in values if v and v > 0]
    if positive and math.log10(max(positive) / min(positive)) < 2:
        formatter = ScalarFormatter()
        formatter.set_scientific(False)
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(formatter)
        ax.yaxis.set_minor_formatter(NullFormatter())


def _integer_x(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _structures(records: Sequence[dict[str, Any]]) -> list[str]:
    found = {r["structure"] for r in records}
    known = [s for s in _STRUCTURE_ORDER if s in found]
    return known + sorted(found - set(known))


def _ok(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r.get("status") == "ok"]


def ppl_vs_size(records: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> Path | None:
    """Perplexity after pruning against target size, per method, one panel per structure.

    The dense model's perplexity is drawn as a dashed line and as the point at size 1.
    """
    records = [r for r in _ok(records) if r.get("ppl_after") is not None]
    if not records:
        return None
    structures = _structures(records)
    fig = _figure(4.2 * len(structures), 3.6)
    axes = fig.subplots(1, len(structures), squeeze=False)[0]
    dense = next((r["ppl_before"] for r in records if r.get("ppl_before") is not None), None)
    for ax, structure in zip(axes, structures, strict=True):
        by_method: dict[str, list[tuple[float, float]]] = defaultdict(list)
        values: list[float] = []
        for r in records:
            if r["structure"] == structure:
                by_method[label(r)].append((r["target_size"], r["ppl_after"]))
        for name in sorted(by_method):
            points = sorted(by_method[name])
            if dense is not None:
                points.append((1.0, dense))
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, marker="o", label=name)
            values.extend(ys)
        if dense is not None:
            ax.axhline(dense, color="grey", linestyle="--", linewidth=1, label="dense")
        _log_axis(ax, values)
        ax.set_xlabel("target size (fraction of weights kept)")
        ax.set_ylabel("test perplexity")
        ax.set_title(structure)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def ppl_vs_real_size(records: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> Path | None:
    """Perplexity against the real (compact-export) size, one line per method and structure.

    Only records with a ``real_size`` are drawn; ``None`` when there are none.
    """
    records = [r for r in _ok(records) if r.get("ppl_after") is not None and r.get("real_size") is not None]
    if not records:
        return None
    fig = _figure(5.5, 3.8)
    ax = fig.subplots()
    dense = next((r["ppl_before"] for r in records if r.get("ppl_before") is not None), None)
    lines: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for r in records:
        lines[f"{label(r)} {r['structure']}"].append((float(r["real_size"]), float(r["ppl_after"])))
    values: list[float] = []
    for name in sorted(lines):
        points = sorted(lines[name]) + ([(1.0, dense)] if dense is not None else [])
        xs, ys = zip(*points, strict=True)
        ax.plot(xs, ys, marker="o", label=name)
        values.extend(ys)
    if dense is not None:
        ax.axhline(dense, color="grey", linestyle="--", linewidth=1, label="dense")
    _log_axis(ax, values)
    ax.set_xlabel("real size (fraction of prunable weights a compact export stores)")
    ax.set_ylabel("test perplexity")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    if title:
        ax.set_title(title, fontsize="medium")
    return _save(fig, path)


def _remaining(modules: Sequence[dict[str, Any]], by: str) -> dict[Any, float]:
    """Fraction of weights remaining, grouped by a module field (``layer`` or ``role``)."""
    kept: dict[Any, int] = defaultdict(int)
    total: dict[Any, int] = defaultdict(int)
    for m in modules:
        kept[m[by]] += int(m["remaining"])
        total[m[by]] += int(m["parameters"])
    return {k: kept[k] / total[k] for k in total if total[k]}


def remaining_by_layer_and_role(modules: Sequence[dict[str, Any]]) -> dict[str, dict[int, float]]:
    """``role -> layer -> fraction remaining``, plus ``"all"`` over every role."""
    out: dict[str, dict[int, float]] = {"all": _remaining(modules, "layer")}
    by_role: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for m in modules:
        by_role[m["role"]].append(m)
    for role, ms in by_role.items():
        out[role] = _remaining(ms, "layer")
    return out


def _role_order(roles) -> list[str]:
    roles = set(roles)
    return [r for r in ROLES if r in roles] + sorted(roles - set(ROLES))


def sparsity(records: Sequence[dict[str, Any]], path: str | Path, method: str = "surgeon",
             title: str = "") -> Path | None:
    """Remaining weights per layer (one line per role) and per role, for ``method``'s runs."""
    runs = [r for r in _ok(records) if r["method"] == method and r.get("modules")]
    if not runs:
        return None
    fig = _figure(10.0, 2.8 * len(runs))
    axes = fig.subplots(len(runs), 2, squeeze=False, width_ratios=(2.2, 1))
    for (ax_layer, ax_role), r in zip(axes, runs, strict=True):
        curves = remaining_by_layer_and_role(r["modules"])
        roles = _role_order(k for k in curves if k != "all")
        for role in roles:
            layers = sorted(curves[role])
            ax_layer.plot(layers, [curves[role][i] for i in layers], marker=".", label=role,
                          linewidth=1)
        layers = sorted(curves["all"])
        ax_layer.plot(layers, [curves["all"][i] for i in layers], color="black", linewidth=2,
                      label="all")
        name = f"{label(r)} {r['structure']} {r['target_size']:g}"
        ax_layer.set_title(f"{name}: remaining per layer")
        ax_layer.set_xlabel("layer")
        _integer_x(ax_layer)
        ax_layer.set_ylabel("fraction remaining")
        ax_layer.set_ylim(0, 1.05)
        ax_layer.grid(True, alpha=0.3)
        ax_layer.legend(fontsize="x-small", ncol=4)
        per_role = _remaining(r["modules"], "role")
        order = _role_order(per_role)
        ax_role.bar(order, [per_role[k] for k in order], color="tab:blue")
        ax_role.axhline(r.get("achieved_size") or r["target_size"], color="black",
                        linestyle="--", linewidth=1)
        ax_role.set_ylim(0, 1.05)
        ax_role.set_title("remaining per role")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def shot_curve(record: dict[str, Any]) -> list[tuple[int, float]] | None:
    """``(shot, perplexity)`` from dense (shot 0) to the last shot, if per-shot ppl was logged."""
    shots = record.get("shot_log") or []
    if not any(s.get("ppl") is not None for s in shots):
        return None
    points = [(0, record["ppl_before"])] if record.get("ppl_before") is not None else []
    for s in shots:
        ppl = s.get("ppl")
        if ppl is None and s.get("shot") == len(shots):
            ppl = record.get("ppl_after")
        if ppl is not None:
            points.append((int(s["shot"]), float(ppl)))
    return points


def ppl_per_shot(records: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> Path | None:
    """Perplexity after every shot, one line per run that recorded it."""
    curves = [(r, shot_curve(r)) for r in _ok(records)]
    curves = [(r, c) for r, c in curves if c]
    if not curves:
        return None
    fig = _figure(5.5, 3.6)
    ax = fig.subplots()
    for r, points in curves:
        xs, ys = zip(*points, strict=True)
        ax.plot(xs, ys, marker="o", label=f"{label(r)} {r['structure']} {r['target_size']:g}")
    _log_axis(ax, [y for _, points in curves for _, y in points])
    _integer_x(ax)
    ax.set_xlabel("shot (0 = dense)")
    ax.set_ylabel("test perplexity")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    return _save(fig, path)
