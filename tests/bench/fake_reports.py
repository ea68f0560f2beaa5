"""Synthetic pruning reports and records for the benchmark tests (no model involved)."""

from __future__ import annotations

from typing import Any

ROLES = ("q", "k", "v", "o", "gate", "up", "down")


def fake_report(config: Any, *, ppl_after: float = 30.0, per_shot: bool = False) -> dict[str, Any]:
    """A report shaped like ``llm_surgeon.run.runner.prune``'s for ``config`` (a ``RunConfig``)."""
    target = config.target_size
    modules = []
    for layer in range(4):
        for j, role in enumerate(ROLES):
            params = 100 * (j + 1)
            keep = min(1.0, target * (0.6 + 0.2 * layer))  # deeper layers keep more
            modules.append({"name": f"model.layers.{layer}.{role}", "layer": layer, "role": role,
                            "shape": [10, 10 * (j + 1)], "parameters": params,
                            "remaining": round(params * keep)})
    shots = []
    for s in range(1, config.shots + 1):
        info: dict[str, Any] = {"curvature_mb": 10.0 * s}
        if per_shot and s < config.shots:
            info["ppl"] = 20.0 + s
        shots.append({"shot": s, "target": 1 - (1 - target) * s / config.shots, "achieved": target,
                      "seconds": {"passes": 2.0, "algebra": 1.0, "solver": 0.5, "total": 3.5},
                      "predicted_cost": 0.1 * s, "info": info})
    return {
        "report_version": 1, "model": config.model, "method": config.method, "curvature": "kfac",
        "structure": config.structure, "update": "full", "target_size": target,
        "achieved_size": target - 0.001, "shots": config.shots,
        "calibration": {"nsamples": config.calibration.nsamples, "seqlen": config.calibration.seqlen,
                        "split_used": "validation"},
        "evaluation": {"windows": config.evaluation.windows, "seqlen": config.evaluation.seqlen,
                       "data": {"split": "test"}, "every_shot": per_shot},
        "ppl_before": 17.25, "ppl_after": ppl_after, "shot_log": shots, "modules": modules,
        "seconds": {"load": 4.0, "passes": 2.0 * config.shots, "algebra": 1.0 * config.shots,
                    "solver": 0.5 * config.shots, "eval": 6.0},
        "seconds_total": 12.0 + 3.5 * config.shots, "peak_rss_mb": 1234.5,
        "versions": {"torch": "2.13.0", "llm-surgeon": "0.1.0"}, "config": config.to_dict(),
    }
