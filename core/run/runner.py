"""The pruning run: load, calibrate, prune in shots, evaluate, write the outputs.

:func:`prune` is the Python API behind ``llm-surgeon prune``::

    from llm_surgeon import RunConfig, prune

    report = prune(RunConfig(model="smollm2-135m", method="surgeon", structure="row-col",
                             target_size=0.8, shots=5, out="out/surgeon-rowcol-0.8"))
    print(report["ppl_before"], report["ppl_after"])
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from llm_surgeon.data.perplexity import perplexity
from llm_surgeon.data.windows import calibration_windows, eval_windows
from llm_surgeon.methods.base import Method, ShotLog
from llm_surgeon.methods.loop import lora_hook, run_shots
from llm_surgeon.methods.lora.training import finetune
from llm_surgeon.methods.session import PruningSession
from llm_surgeon.model.adapters import adapter_for
from llm_surgeon.model.loading import load_model, save_model
from llm_surgeon.model.state import ModuleState
from llm_surgeon.pruning.structures import UpdateMode
from llm_surgeon.run import ppl_cache
from llm_surgeon.run.chat import calibration_conversations, fidelity_check
from llm_surgeon.run.config import RunConfig
from llm_surgeon.run.report import build_report
from llm_surgeon.run.validate import ResolvedRun, validate_run
from llm_surgeon.util.io import atomic_output, check_output_folder, write_json, write_jsonl
from llm_surgeon.util.resources import peak_rss_mb

log = logging.getLogger(__name__)

#: The calibration conversations in the output folder (``chat`` calibration).
CONVERSATIONS_FILE = "calibration_conversations.jsonl"


def prune(config: RunConfig, *, progress: bool = True, overwrite: bool = False) -> dict[str, Any]:
    """Run one pruning job described by ``config`` and return its report.

    If ``config.out`` is set, the pruned model (Hugging Face format), ``run_config.json``
    and ``report.json`` are written there atomically: a failed run leaves no folder.
    """
    resolved = validate_run(config)
    if config.out:
        check_output_folder(config.out, overwrite=overwrite)  # fail now, not after hours of work
    started = time.perf_counter()
    with torch_settings(config.seed):
        return _run(config, resolved, progress, overwrite, started)


@contextlib.contextmanager
def torch_settings(seed: int) -> Iterator[None]:
    """Seed and deterministic float32 matmul precision for the duration of a run."""
    precision = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(precision)


def build_session(config: RunConfig, resolved: ResolvedRun, model: nn.Module, calibration: Tensor,
                  progress: bool) -> tuple[Method, PruningSession]:
    """The run's method and a session over ``model`` with every module dense."""
    adapter = adapter_for(model)
    method = resolved.create_method()
    session = PruningSession(
        model=model,
        adapter=adapter,
        states=[ModuleState.dense(pm) for pm in adapter.prunable_modules(model)],
        structure=resolved.create_structure(),
        structure_name=resolved.structure.name,
        calibration=calibration,
        config=config,
        estimator=resolved.create_curvature(),
        update=UpdateMode(config.update) if config.update else method.default_update,
        progress=progress,
    )
    return method, session


class _Evaluation:
    """Perplexity on the run's evaluation windows, timed into ``totals``."""

    def __init__(self, config: RunConfig, windows: Tensor | None, progress: bool,
                 totals: dict[str, float]) -> None:
        self.config = config
        self.windows = windows
        self.progress = progress
        self.totals = totals

    def __call__(self, model: nn.Module) -> tuple[float, float]:
        start = time.perf_counter()
        ppl = perplexity(model, self.windows, batch_size=self.config.evaluation.batch_size,
                         progress=self.progress)
        return ppl, time.perf_counter() - start

    def dense(self, model: nn.Module) -> float | None:
        """The dense perplexity, from the on-disk cache when it has it."""
        if self.windows is None:
            return None
        key = ppl_cache.key(self.config, self.windows)
        ppl = ppl_cache.get(key)
        if ppl is None:
            ppl, seconds = self(model)
            self.totals["eval"] = self.totals.get("eval", 0.0) + seconds
            ppl_cache.put(key, ppl)
        log.info("perplexity before pruning: %.3f", ppl)
        return ppl

    def every_shot(self, session: PruningSession, shot_log: ShotLog) -> None:
        """Shot hook: perplexity after every shot but the last (``evaluation.every_shot``)."""
        if self.windows is not None and self.config.evaluation.every_shot and shot_log.shot < self.config.shots:
            shot_log.info["ppl"], shot_log.seconds["eval"] = self(session.model)


def _log_shot(session: PruningSession, shot_log: ShotLog) -> None:
    log.info("shot %d/%d: target %.4f achieved %.4f", shot_log.shot, session.config.shots,
             shot_log.target, shot_log.achieved)


def _calibration(config: RunConfig, model: nn.Module, tokenizer, identity: list | None, progress: bool,
                 totals: dict[str, float]) -> tuple[Tensor, dict[str, Any], list[dict] | None]:
    """Calibration windows, their info and the chat conversations (``None`` without chat)."""
    records, chat_info = calibration_conversations(config.calibration, model, tokenizer, identity,
                                                   progress=progress)
    if "seconds" in chat_info:
        totals["generation"] = chat_info["seconds"]
    conversations = [r["messages"] for r in records] if records is not None else None
    calibration, info = calibration_windows(tokenizer, config.calibration, conversations=conversations)
    if chat_info:
        info["conversations"] = {**chat_info, **info.get("conversations", {})}
    if info.get("note"):
        log.warning("%s", info["note"])
    return calibration, info, records


def _run(config: RunConfig, resolved: ResolvedRun, progress: bool, overwrite: bool, started: float) -> dict:
    model, tokenizer = load_model(config.model, dtype=config.dtype, device=config.device,
                                  trust_remote_code=config.trust_remote_code)
    totals: dict[str, float] = {"load": time.perf_counter() - started}
    rss_after_load = peak_rss_mb()  # RSS high-water mark; shots record their own
    identity = ppl_cache.model_identity(config.model, config.dtype, config.device)
    calibration, calibration_info, conversations = _calibration(config, model, tokenizer, identity,
                                                                progress, totals)
    windows = eval_windows(tokenizer, config.evaluation) if config.evaluation.enabled else None
    evaluate = _Evaluation(config, windows, progress, totals)
    ppl_before = evaluate.dense(model)

    with fidelity_check(config.fidelity, identity, model, tokenizer, totals,
                        progress=progress) as measure_fidelity:
        method, session = build_session(config, resolved, model, calibration, progress)
        shot_logs = run_shots(method, session, hooks=[lora_hook, evaluate.every_shot, _log_shot])
        for shot_log in shot_logs:
            for phase, secs in shot_log.seconds.items():
                if phase != "total":
                    totals[phase] = totals.get(phase, 0.0) + secs

        final_lora = None
        if config.lora.enabled and config.lora.final_steps > 0:
            final_lora = finetune(session, config.lora, phase="final", steps=config.lora.final_steps)
            totals["lora"] = totals.get("lora", 0.0) + final_lora.get("seconds", 0.0)

        ppl_after = None
        if windows is not None:
            ppl_after, seconds = evaluate(model)
            totals["eval"] = totals.get("eval", 0.0) + seconds
            log.info("perplexity after pruning: %.3f", ppl_after)
        fidelity = measure_fidelity()

    report = build_report(config, resolved, session, shot_logs, calibration_info=calibration_info,
                          ppl_before=ppl_before, ppl_after=ppl_after, totals=totals, started=started,
                          final_lora=final_lora, fidelity=fidelity)
    report["peak_rss_mb_after"] = {"load": rss_after_load}
    if config.out:
        _write_outputs(config, overwrite, model, tokenizer, report, conversations, started)
    return report


def _write_outputs(config: RunConfig, overwrite: bool, model: nn.Module, tokenizer, report: dict[str, Any],
                   conversations: list[dict] | None, started: float) -> None:
    """The output folder, atomically: model, ``run_config.json``, conversations, ``report.json``."""
    with atomic_output(config.out, overwrite=overwrite) as folder:
        if config.save_model:
            save_model(model, tokenizer, folder)
        write_json(Path(folder) / "run_config.json", config.to_dict())
        if conversations is not None:
            write_jsonl(Path(folder) / CONVERSATIONS_FILE, conversations)
            report["calibration"]["conversations"]["file"] = CONVERSATIONS_FILE
        report["seconds_total"] = time.perf_counter() - started
        report["peak_rss_mb"] = peak_rss_mb()
        write_json(Path(folder) / "report.json", report)
