"""The pruning run: load, calibrate, prune in shots, evaluate, write the outputs.

:func:`prune` is the Python API behind ``llm-surgeon prune``::

    from llm_surgeon.config import RunConfig
    from llm_surgeon.runner import prune

    report = prune(RunConfig(model="smollm2-135m", method="surgeon", structure="row-col",
                             target_size=0.8, shots=5, out="out/surgeon-rowcol-0.8"))
    print(report["ppl_before"], report["ppl_after"])
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch

from llm_surgeon import ppl_cache
from llm_surgeon.adapters import adapter_for
from llm_surgeon.config import RunConfig
from llm_surgeon.data import calibration_windows, eval_windows
from llm_surgeon.evaluate import perplexity
from llm_surgeon.models import load_model, save_model
from llm_surgeon.report import (
    atomic_output,
    check_output_folder,
    library_versions,
    peak_rss_mb,
    write_json,
)
from llm_surgeon.schedule import targets
from llm_surgeon.session import PruningSession
from llm_surgeon.structures import ModuleState, UpdateMode
from llm_surgeon.validate import ResolvedRun, validate_run

log = logging.getLogger(__name__)

REPORT_VERSION = 1


def prune(config: RunConfig, *, progress: bool = True, overwrite: bool = False) -> dict[str, Any]:
    """Run one pruning job described by ``config`` and return its report.

    If ``config.out`` is set, the pruned model (Hugging Face format), ``run_config.json``
    and ``report.json`` are written there atomically: a failed run leaves no folder.
    """
    resolved = validate_run(config)
    if config.out:
        check_output_folder(config.out, overwrite=overwrite)  # fail now, not after hours of work
    started = time.perf_counter()
    with _torch_settings(config.seed):
        report = _run(config, resolved, progress, overwrite, started)
    return report


class _torch_settings:
    """Seed and deterministic matmul precision for the duration of a run."""

    def __init__(self, seed: int):
        self.seed = seed

    def __enter__(self) -> None:
        self._precision = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision("highest")
        torch.manual_seed(self.seed)

    def __exit__(self, *exc: object) -> None:
        torch.set_float32_matmul_precision(self._precision)


def _build_session(config: RunConfig, resolved: ResolvedRun, model, calibration, progress: bool) -> PruningSession:
    adapter = adapter_for(model)
    states = [ModuleState.dense(pm) for pm in adapter.prunable_modules(model)]
    method = resolved.create_method()
    structure = resolved.create_structure()
    estimator = resolved.create_curvature()
    default_update = getattr(method, "default_update", UpdateMode.NONE)
    return PruningSession(
        model=model,
        adapter=adapter,
        states=states,
        structure=structure,
        structure_name=resolved.structure.name,
        calibration=calibration,
        config=config,
        method=method,
        estimator=estimator,
        update=UpdateMode(config.update) if config.update else default_update,
        progress=progress,
    )


def _evaluate(model, windows, config: RunConfig, progress: bool) -> tuple[float, float]:
    start = time.perf_counter()
    ppl = perplexity(model, windows, batch_size=config.evaluation.batch_size, progress=progress)
    return ppl, time.perf_counter() - start


def _run(config: RunConfig, resolved: ResolvedRun, progress: bool, overwrite: bool, started: float) -> dict:
    model, tokenizer = load_model(config.model, dtype=config.dtype, device=config.device,
                                  trust_remote_code=config.trust_remote_code)
    model.eval()
    seconds_load = time.perf_counter() - started
    calibration, calibration_info = calibration_windows(tokenizer, config.calibration)
    if calibration_info.get("note"):
        log.warning("%s", calibration_info["note"])

    totals: dict[str, float] = {"load": seconds_load}
    rss_after_load = peak_rss_mb()  # RSS high-water mark; shots record their own
    ppl_before = ppl_after = None
    windows = None
    if config.evaluation.enabled:
        windows = eval_windows(tokenizer, config.evaluation)
        key = ppl_cache.key(config, windows)
        ppl_before = ppl_cache.get(key)
        if ppl_before is None:
            ppl_before, secs = _evaluate(model, windows, config, progress)
            totals["eval"] = totals.get("eval", 0.0) + secs
            ppl_cache.put(key, ppl_before)
        log.info("perplexity before pruning: %.3f", ppl_before)

    session = _build_session(config, resolved, model, calibration, progress)
    method = session.method
    shot_logs = []
    for shot, target in enumerate(targets(config.schedule, config.shots, config.target_size), start=1):
        shot_start = time.perf_counter()
        shot_log = method.run_shot(session, shot, target)
        shot_log.achieved = session.nonzero_size()
        if config.lora.enabled:
            from llm_surgeon.lora import finetune

            shot_log.info["lora"] = finetune(session, config.lora, phase=f"shot{shot}",
                                             steps=config.lora.steps_per_shot)
            shot_log.seconds["lora"] = shot_log.info["lora"].get("seconds", 0.0)
        if windows is not None and config.evaluation.every_shot and shot < config.shots:
            shot_log.info["ppl"], shot_log.seconds["eval"] = _evaluate(model, windows, config, progress)
        shot_log.seconds["total"] = time.perf_counter() - shot_start
        for phase, secs in shot_log.seconds.items():
            if phase != "total":
                totals[phase] = totals.get(phase, 0.0) + secs
        log.info("shot %d/%d: target %.4f achieved %.4f (%.1f s)", shot, config.shots, target,
                 shot_log.achieved, shot_log.seconds["total"])
        shot_logs.append(shot_log)

    final_lora = None
    if config.lora.enabled and config.lora.final_steps > 0:
        from llm_surgeon.lora import finetune

        final_lora = finetune(session, config.lora, phase="final", steps=config.lora.final_steps)
        totals["lora"] = totals.get("lora", 0.0) + final_lora.get("seconds", 0.0)

    if windows is not None:
        ppl_after, secs = _evaluate(model, windows, config, progress)
        totals["eval"] = totals.get("eval", 0.0) + secs
        log.info("perplexity after pruning: %.3f", ppl_after)

    report = _report(config, resolved, session, shot_logs, calibration_info, ppl_before, ppl_after,
                     totals, started, final_lora)
    report["peak_rss_mb_after"] = {"load": rss_after_load}
    if config.out:
        with atomic_output(config.out, overwrite=overwrite) as folder:
            if config.save_model:
                save_model(model, tokenizer, folder)
            write_json(Path(folder) / "run_config.json", config.to_dict())
            report["seconds_total"] = time.perf_counter() - started
            report["peak_rss_mb"] = peak_rss_mb()
            write_json(Path(folder) / "report.json", report)
    return report


def _report(config, resolved, session, shot_logs, calibration_info, ppl_before, ppl_after, totals,
            started, final_lora) -> dict[str, Any]:
    modules = [
        {
            "name": s.pm.name,
            "layer": s.pm.layer,
            "role": s.pm.role,
            "shape": list(s.pm.shape),
            "parameters": s.pm.numel,
            "remaining": int(s.pm.module.weight.count_nonzero()),
        }
        for s in session.states
    ]
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
        "prunable_parameters": session.total_weights(),
        "shots": config.shots,
        "schedule": config.schedule,
        "seed": config.seed,
        "calibration": {**_plain(config.calibration), **calibration_info},
        "evaluation": _plain(config.evaluation),
        "ppl_before": ppl_before,
        "ppl_after": ppl_after,
        "shot_log": [_plain(s) for s in shot_logs],
        "lora_final": final_lora,
        "modules": modules,
        "seconds": totals,
        "seconds_total": time.perf_counter() - started,
        "peak_rss_mb": peak_rss_mb(),
        "versions": library_versions(),
        "config": config.to_dict(),
    }


def _plain(obj: Any) -> Any:
    import attrs

    return attrs.asdict(obj) if attrs.has(type(obj)) else obj
