"""Where a pruned model kept its weights, from a run report's per-module table.

A report's ``modules`` rows (``report.json`` and bench records alike) have ``layer``,
``role`` (q, k, v, o, gate, up, down; fc1, fc2 for OPT), ``parameters`` and
``remaining``. The summaries here are plain dictionaries; the figures are in
:mod:`llm_surgeon.analysis.run_figures` and :mod:`llm_surgeon.analysis.comparison_figures`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

#: Display order of module roles (Llama, then OPT).
ROLES = ("q", "k", "v", "o", "gate", "up", "down", "fc1", "fc2")


def kept_fraction(modules: Sequence[dict[str, Any]], by: str) -> dict[Any, float]:
    """Fraction of weights kept, grouped by a module field (``layer`` or ``role``)."""
    kept: dict[Any, int] = defaultdict(int)
    total: dict[Any, int] = defaultdict(int)
    for m in modules:
        kept[m[by]] += int(m["remaining"])
        total[m[by]] += int(m["parameters"])
    return {k: kept[k] / total[k] for k in total if total[k]}


def kept_by_layer_and_role(modules: Sequence[dict[str, Any]]) -> dict[str, dict[int, float]]:
    """``role -> layer -> fraction kept``, plus ``"all"`` over every role."""
    out: dict[str, dict[int, float]] = {"all": kept_fraction(modules, "layer")}
    by_role: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for m in modules:
        by_role[m["role"]].append(m)
    for role, ms in by_role.items():
        out[role] = kept_fraction(ms, "layer")
    return out


def role_order(roles: Iterable[str]) -> list[str]:
    """``roles`` in :data:`ROLES` order, unknown ones after, sorted."""
    roles = set(roles)
    return [r for r in ROLES if r in roles] + sorted(roles - set(ROLES))


def _shot_ppl(shot: dict[str, Any]) -> float | None:
    """A shot's perplexity: ``ppl`` (bench records) or ``info.ppl`` (``report.json``)."""
    ppl = shot.get("ppl")
    if ppl is None:
        ppl = (shot.get("info") or {}).get("ppl")
    return None if ppl is None else float(ppl)


def ppl_per_shot(report: dict[str, Any]) -> list[tuple[int, float]] | None:
    """``(shot, perplexity)`` from dense (shot 0) to the last shot, if shots were evaluated.

    The last shot's perplexity is the report's ``ppl_after``. ``None`` when no shot
    before the last was evaluated (``evaluation.every_shot`` off).
    """
    shots = report.get("shot_log") or []
    if not any(_shot_ppl(s) is not None for s in shots):
        return None
    points = [(0, float(report["ppl_before"]))] if report.get("ppl_before") is not None else []
    for s in shots:
        ppl = _shot_ppl(s)
        if ppl is None and s.get("shot") == len(shots):
            ppl = report.get("ppl_after")
        if ppl is not None:
            points.append((int(s["shot"]), float(ppl)))
    return points


def run_label(report: dict[str, Any]) -> str:
    """A run's short name: method (+LoRA), structure and target size."""
    lora = report.get("lora")  # a bool in bench records; report.json has it in its config
    if lora is None:
        lora = ((report.get("config") or {}).get("lora") or {}).get("enabled")
    name = report["method"] + ("+LoRA" if lora else "")
    return f"{name} {report['structure']} {float(report['target_size']):g}"
