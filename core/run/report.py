"""The run report (``report.json``): what ran, what it achieved, what it cost."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from llm_surgeon.methods.base import ShotLog
from llm_surgeon.methods.session import PruningSession
from llm_surgeon.model.state import mask_sha256
from llm_surgeon.run.config import RunConfig, unstructure
from llm_surgeon.run.validate import ResolvedRun
from llm_surgeon.util.resources import library_versions, peak_rss_mb

#: Version of the layout of ``report.json``.
REPORT_VERSION = 1


def module_table(session: PruningSession) -> list[dict[str, Any]]:
    """Per prunable module: name, layer, role, shape, parameters and nonzero weights left."""
    return [
        {
            "name": s.pm.name,
            "layer": s.pm.layer,
            "role": s.pm.role,
            "shape": list(s.pm.shape),
            "parameters": s.pm.numel,
            "remaining": int(s.pm.weight.count_nonzero()),
        }
        for s in session.states
    ]


def build_report(
    config: RunConfig,
    resolved: ResolvedRun,
    session: PruningSession,
    shot_logs: Sequence[ShotLog],
    *,
    calibration_info: dict[str, Any],
    ppl_before: float | None,
    ppl_after: float | None,
    totals: dict[str, float],
    started: float,
    final_lora: dict[str, Any] | None,
    evaluation_info: dict[str, Any] | None = None,
    fidelity: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The report of a finished run (``seconds_total`` and ``peak_rss_mb`` as of now)."""
    # Parameters of the whole model, tied weights counted once (``parameters()`` dedups).
    model_parameters = sum(p.numel() for p in session.model.parameters())
    return {
        "report_version": REPORT_VERSION,
        "model": config.model,
        "method": config.method,
        "curvature": resolved.curvature.name if resolved.curvature else None,
        "structure": config.structure,
        "update": session.update.value,
        "damping": next((s.info["damping"] for s in shot_logs if "damping" in s.info), None),
        "target_size": config.target_size,
        "achieved_size": session.nonzero_size(),
        "mask_size": session.size(),
        "real_size": session.real_size(),
        "real_parameters": session.real_parameters(),
        "mask_sha256": mask_sha256(session.states),
        "prunable_parameters": session.total_weights(),
        "model_parameters": model_parameters,
        "prunable_fraction": session.total_weights() / model_parameters,
        "shots": config.shots,
        "schedule": config.schedule,
        "seed": config.seed,
        "calibration": {**unstructure(config.calibration), **calibration_info},
        "evaluation": {**unstructure(config.evaluation), **(evaluation_info or {})},
        "ppl_before": ppl_before,
        "ppl_after": ppl_after,
        "fidelity": fidelity,
        "shot_log": [unstructure(s) for s in shot_logs],
        "lora_final": final_lora,
        "modules": module_table(session),
        "seconds": totals,
        "seconds_total": time.perf_counter() - started,
        "peak_rss_mb": peak_rss_mb(),
        "versions": library_versions(),
        "config": config.to_dict(),
    }
