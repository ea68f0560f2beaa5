"""The pruning run: load, calibrate, prune in shots, evaluate, write the outputs.

:func:`prune` is the Python API behind ``llm-surgeon prune``::

    from llm_surgeon import RunConfig, prune

    report = prune(RunConfig(model="smollm2-135m", method="surgeon", structure="row-col",
                             target_size=0.8, shots=5, out="out/surgeon-rowcol-0.8"))
    print(report["ppl_before"], report["ppl_after"])

Under ``torchrun`` the same call is one data-parallel job over all ranks
(:mod:`llm_surgeon.dist`): calibration and evaluation windows are split across them,
every rank returns the same report, and only rank 0 writes ``config.out``.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import torch
from torch import Tensor, nn

from llm_surgeon.data.perplexity import perplexity, perplexity_of, window_losses
from llm_surgeon.data.windows import calibration_windows, eval_windows
from llm_surgeon.dist import Communicator, Traffic, current, distributed
from llm_surgeon.errors import ConfigError
from llm_surgeon.methods.base import Method, ShotLog
from llm_surgeon.methods.loop import lora_hook, run_shots
from llm_surgeon.methods.lora.training import finetune
from llm_surgeon.methods.session import PruningSession
from llm_surgeon.model.adapters import adapter_for
from llm_surgeon.model.loading import load_model, save_model
from llm_surgeon.model.state import ModuleState
from llm_surgeon.pruning.structures import UpdateMode
from llm_surgeon.run import ppl_cache
from llm_surgeon.run.config import RunConfig
from llm_surgeon.run.report import build_report, mask_digest
from llm_surgeon.run.validate import ResolvedRun, validate_run
from llm_surgeon.util.io import atomic_output, check_output_folder, write_json
from llm_surgeon.util.resources import peak_rss_mb

log = logging.getLogger(__name__)


def prune(config: RunConfig, *, progress: bool = True, overwrite: bool = False,
          model: nn.Module | None = None, tokenizer: Any = None,
          calibration: Tensor | None = None) -> dict[str, Any]:
    """Run one pruning job described by ``config`` and return its report.

    If ``config.out`` is set, the pruned model (Hugging Face format), ``run_config.json``
    and ``report.json`` are written there atomically: a failed run leaves no folder.

    Args:
        config: the run.
        progress: show progress bars (rank 0 only in a distributed job).
        overwrite: replace a non-empty ``config.out``.
        model: prune this in-memory causal LM instead of loading ``config.model`` (which
            is then only its name in the report); it is pruned in place.
        tokenizer: ``model``'s tokenizer, for text calibration and evaluation.
        calibration: token ids ``(nsamples, seqlen)`` to calibrate on instead of windows
            of ``config.calibration.data``.
    """
    resolved = validate_run(config, check_model=model is None)
    if config.out:
        check_output_folder(config.out, overwrite=overwrite)  # fail now, not after hours of work
    started = time.perf_counter()
    with distributed(config.device) as comm, torch_settings(config.seed):
        check_distributed(config, comm, calibration)
        inputs = _Inputs(model, tokenizer, calibration)
        return _run(config, resolved, inputs, progress and comm.is_main, overwrite, started)


@attrs.frozen
class _Inputs:
    """What the caller gave instead of loading it (``None``: load it)."""

    model: nn.Module | None
    tokenizer: Any
    calibration: Tensor | None


def check_distributed(config: RunConfig, comm: Communicator, calibration: Tensor | None = None) -> None:
    """What a distributed run cannot do, refused before any weights load."""
    if not comm.distributed:
        return
    if config.lora.enabled:
        raise ConfigError("LoRA fine-tuning is not supported in distributed runs yet; "
                          "run it in one process")
    nsamples = len(calibration) if calibration is not None else config.calibration.nsamples
    if nsamples < comm.size:
        raise ConfigError(f"{nsamples} calibration windows cannot be split over {comm.size} ranks; "
                          f"give at least --nsamples {comm.size}")


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
    """Perplexity on the run's evaluation windows, timed into ``totals``.

    In a distributed job each rank evaluates its share of the windows and the summed
    losses give the perplexity over all of them.
    """

    def __init__(self, config: RunConfig, windows: Tensor | None, progress: bool,
                 totals: dict[str, float]) -> None:
        self.config = config
        self.windows = windows
        self.progress = progress
        self.totals = totals

    def __call__(self, model: nn.Module) -> tuple[float, float]:
        start = time.perf_counter()
        comm, batch_size = current(), self.config.evaluation.batch_size
        if comm.distributed:
            losses = window_losses(model, comm.shard(self.windows), batch_size=batch_size,
                                   progress=self.progress)
            total = comm.sum(float(losses.sum()), kind="evaluation")
            ppl = perplexity_of(total / comm.sum(len(losses), kind="evaluation"))
        else:
            ppl = perplexity(model, self.windows, batch_size=batch_size, progress=self.progress)
        return ppl, time.perf_counter() - start

    def dense(self, model: nn.Module) -> float | None:
        """The dense perplexity, from the on-disk cache when it has it (rank 0's cache)."""
        if self.windows is None:
            return None
        comm = current()
        key = ppl_cache.key(self.config, self.windows)
        ppl = comm.broadcast_object(ppl_cache.get(key) if comm.is_main else None)
        if ppl is None:
            ppl, seconds = self(model)
            self.totals["eval"] = self.totals.get("eval", 0.0) + seconds
            if comm.is_main:
                ppl_cache.put(key, ppl)
        log.info("perplexity before pruning: %.3f", ppl)
        return ppl

    def every_shot(self, session: PruningSession, shot_log: ShotLog) -> None:
        """Shot hook: perplexity after every shot but the last (``evaluation.every_shot``)."""
        if self.windows is not None and self.config.evaluation.every_shot and shot_log.shot < self.config.shots:
            shot_log.info["ppl"], shot_log.seconds["eval"] = self(session.model)


def _log_shot(session: PruningSession, shot_log: ShotLog) -> None:
    shot_log.info["mask_sha256"] = mask_digest(session.states)
    log.info("shot %d/%d: target %.4f achieved %.4f", shot_log.shot, session.config.shots,
             shot_log.target, shot_log.achieved)


def _load(config: RunConfig, inputs: _Inputs) -> tuple[nn.Module, Any]:
    """The model and tokenizer, loaded unless the caller gave them."""
    if inputs.model is not None:
        if inputs.tokenizer is None and (config.evaluation.enabled or inputs.calibration is None):
            raise ConfigError("an in-memory model without a tokenizer needs calibration token ids "
                              "and evaluation switched off")
        return inputs.model.to(config.device).eval(), inputs.tokenizer
    return load_model(config.model, dtype=config.dtype, device=config.device,
                      trust_remote_code=config.trust_remote_code)


def _calibration(config: RunConfig, tokenizer: Any, given: Tensor | None) -> tuple[Tensor, dict[str, Any]]:
    """This rank's calibration windows (all of them in a single process) and their info."""
    if given is not None:
        calibration, info = given, {"source": "token ids given by the caller", "nsamples": len(given),
                                    "seqlen": given.shape[1]}
    else:
        calibration, info = calibration_windows(tokenizer, config.calibration)
    if info.get("note"):
        log.warning("%s", info["note"])
    comm = current()
    if comm.distributed:
        info["windows_per_rank"] = comm.gather_objects(len(comm.shard(calibration)))
    return comm.shard(calibration), info


def _run(config: RunConfig, resolved: ResolvedRun, inputs: _Inputs, progress: bool, overwrite: bool,
         started: float) -> dict:
    model, tokenizer = _load(config, inputs)
    totals: dict[str, float] = {"load": time.perf_counter() - started}
    rss_after_load = peak_rss_mb()  # RSS high-water mark; shots record their own
    calibration, calibration_info = _calibration(config, tokenizer, inputs.calibration)
    windows = eval_windows(tokenizer, config.evaluation) if config.evaluation.enabled else None
    evaluate = _Evaluation(config, windows, progress, totals)
    ppl_before = evaluate.dense(model)

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

    report = build_report(config, resolved, session, shot_logs, calibration_info=calibration_info,
                          ppl_before=ppl_before, ppl_after=ppl_after, totals=totals, started=started,
                          final_lora=final_lora)
    report["peak_rss_mb_after"] = {"load": rss_after_load}
    comm = current()
    if comm.distributed:
        report["distributed"] = {
            "world_size": comm.size, "backend": comm.backend,
            "communication": comm.traffic.since(Traffic()),
            "peak_rss_mb_per_rank": comm.gather_objects(peak_rss_mb()),
        }
    if config.out and comm.is_main:
        with atomic_output(config.out, overwrite=overwrite) as folder:
            if config.save_model:
                save_model(model, tokenizer, folder)
            write_json(Path(folder) / "run_config.json", config.to_dict())
            report["seconds_total"] = time.perf_counter() - started
            report["peak_rss_mb"] = peak_rss_mb()
            write_json(Path(folder) / "report.json", report)
    return report
