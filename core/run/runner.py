"""The pruning run: load, calibrate, prune in shots, evaluate, write the outputs.

:func:`prune` is the Python API behind ``llm-surgeon prune``::

    from llm_surgeon import RunConfig, prune

    report = prune(RunConfig(model="smollm2-135m", method="surgeon", structure="row-col",
                             target_size=0.8, shots=5, out="out/surgeon-rowcol-0.8"))
    print(report["ppl_before"], report["ppl_after"])

With ``out``, every completed shot is checkpointed in the output's work folder
(:mod:`llm_surgeon.run.output`), and ``prune(config, resume=True)`` continues an
interrupted run after its last checkpoint, with a bit-identical result.

Under ``torchrun`` the same call is one data-parallel job over all ranks
(:mod:`llm_surgeon.dist`): calibration and evaluation windows are split across them,
every rank returns the same report, and only rank 0 writes ``config.out`` (and its
checkpoints); resuming is refused there (resume in one process).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import torch
from torch import Tensor, nn

from llm_surgeon.data.perplexity import perplexity, perplexity_of, window_losses
from llm_surgeon.data.tasks import accuracy_line, run_tasks
from llm_surgeon.data.windows import eval_windows
from llm_surgeon.dist import Traffic, current, distributed, world_size_from_env
from llm_surgeon.errors import ConfigError, OutputError
from llm_surgeon.methods.base import Method, ShotLog
from llm_surgeon.methods.loop import lora_hook, run_shots
from llm_surgeon.methods.lora.training import finetune
from llm_surgeon.methods.session import PruningSession
from llm_surgeon.model.adapters import adapter_for
from llm_surgeon.model.loading import load_weights, save_model
from llm_surgeon.model.masks import MASKS_FILE, save_masks
from llm_surgeon.model.state import ModuleState, mask_sha256
from llm_surgeon.pruning.structures import UpdateMode
from llm_surgeon.run import ppl_cache
from llm_surgeon.run.chat import fidelity_check
from llm_surgeon.run.config import CHECKPOINT_KEEP, RunConfig
from llm_surgeon.run.inputs import RunInputs, complete_calibration, prepare_inputs
from llm_surgeon.run.output import CONVERSATIONS, RunOutput
from llm_surgeon.run.ranks import check_distributed, my_share, start_output
from llm_surgeon.run.report import build_report
from llm_surgeon.run.validate import ResolvedRun, validate_run
from llm_surgeon.util.faults import fault_point
from llm_surgeon.util.io import write_json, write_jsonl
from llm_surgeon.util.progress import no_progress_bars
from llm_surgeon.util.resources import peak_rss_mb

log = logging.getLogger(__name__)


def prune(config: RunConfig, *, progress: bool = True, overwrite: bool = False,
          resume: bool = False, checkpoints: str = "all", model: nn.Module | None = None,
          tokenizer: Any = None, calibration: Tensor | None = None) -> dict[str, Any]:
    """Run one pruning job described by ``config`` and return its report.

    If ``config.out`` is set, the pruned model (Hugging Face format: zeroed, compact or both,
    see ``config.save``), ``run_config.json``, ``masks.safetensors`` (one bit per prunable
    weight, :mod:`llm_surgeon.model.masks`) and ``report.json`` are written there
    atomically: a failed run leaves no folder that looks complete, and any earlier output
    is left as it was.

    Args:
        config: the run.
        progress: show progress bars (rank 0 only in a distributed job).
        overwrite: replace a non-empty ``config.out`` (and discard an interrupted run of it).
        resume: continue the interrupted run of ``config.out`` after its last checkpoint;
            ``config`` must be the one it was started with (not under torchrun).
        checkpoints: with ``config.out``, checkpoint every shot (``all``), keep only the
            last checkpoint (``last``), or write none (``off``); rank 0 writes them.
        model: prune this in-memory causal LM instead of loading ``config.model`` (which
            is then only its name in the report); it is pruned in place.
        tokenizer: ``model``'s tokenizer, for text calibration and evaluation.
        calibration: token ids ``(nsamples, seqlen)`` to calibrate on instead of windows
            of ``config.calibration.data``.

    Raises:
        ConfigError: invalid input, found before any weights are loaded.
    """
    if checkpoints not in CHECKPOINT_KEEP:
        raise ConfigError(f"checkpoints must be one of {', '.join(CHECKPOINT_KEEP)}, got {checkpoints!r}")
    if resume and not config.out:
        raise ConfigError("resuming needs the output folder of the interrupted run (out)")
    if resume and world_size_from_env() > 1:
        raise ConfigError("resuming is not supported under torchrun: resume the run in one process "
                          "(llm-surgeon prune --resume OUT), or start it again")
    resolved = validate_run(config, check_model=model is None)
    started = time.perf_counter()
    with distributed(config.device) as comm:
        check_distributed(config, comm, calibration, resolved.create_structure())
        output = start_output(config, comm, resume=resume, overwrite=overwrite, keep=checkpoints)
        done = None
        if output is not None and output.partial.saved:  # killed after the output was complete, before its rename
            output.commit()
            done = json.loads((Path(config.out) / "report.json").read_text(encoding="utf-8"))
        done = comm.broadcast_object(done)
        if done is not None:
            return done
        progress = progress and comm.is_main
        try:
            with torch_settings(config.seed), no_progress_bars(not progress):
                return _run(config, resolved, _Inputs(model, tokenizer, calibration), progress, started, output)
        except BaseException as exc:
            kept = output.failed() if output is not None else None
            if kept is not None and hasattr(exc, "add_note"):  # Python >= 3.11
                exc.add_note(kept)
            elif kept is not None:
                log.warning("%s", kept)
            raise


@attrs.frozen
class _Inputs:
    """What the caller gave instead of loading it (``None``: load it)."""

    model: nn.Module | None
    tokenizer: Any
    calibration: Tensor | None


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
    shot_log.info["mask_sha256"] = mask_sha256(session.states)
    log.info("shot %d/%d: target %.4f achieved %.4f", shot_log.shot, session.config.shots,
             shot_log.target, shot_log.achieved)


def _inputs(config: RunConfig, given: _Inputs, output: RunOutput | None) -> RunInputs:
    """The run's inputs (:func:`~llm_surgeon.run.inputs.prepare_inputs`), or the caller's.

    Everything that needs no weights is built before they load, so that data too short
    for the run fails at once. The calibration windows are all of them (every rank has
    them; see :func:`~llm_surgeon.run.ranks.my_share`).
    """
    if given.model is not None and given.tokenizer is None and (
            config.evaluation.enabled or given.calibration is None):
        raise ConfigError("an in-memory model without a tokenizer needs calibration token ids "
                          "and evaluation switched off")
    if given.calibration is None:
        return prepare_inputs(config, output, tokenizer=given.tokenizer)
    inputs = RunInputs(given.tokenizer, calibration=given.calibration,
                       calibration_info={"source": "token ids given by the caller",
                                         "nsamples": len(given.calibration),
                                         "seqlen": given.calibration.shape[1]})
    if config.evaluation.enabled:
        inputs.windows = eval_windows(given.tokenizer, config.evaluation, inputs.evaluation_info)
    if output is not None:
        output.check_inputs(given.calibration)
    return inputs


def _load(config: RunConfig, given: _Inputs) -> nn.Module:
    """The model, loaded unless the caller gave it."""
    if given.model is not None:
        return given.model.to(config.device).eval()
    return load_weights(config.model, dtype=config.dtype, device=config.device,
                        trust_remote_code=config.trust_remote_code)


def _shots(method: Method, session: PruningSession, evaluate: _Evaluation,
           output: RunOutput | None) -> list[ShotLog]:
    """Every shot's log: restored from the checkpoint of a resumed run, then run.

    In a distributed job only rank 0 has an ``output``, so only it writes checkpoints.
    """
    logs: list[ShotLog] = []
    checkpoint = output.checkpoint if output is not None else None
    if checkpoint is not None:
        logs = checkpoint.restore(session)
    hooks = [lora_hook, evaluate.every_shot, _log_shot]
    writer = output.hook(logs) if output is not None else None
    if writer is not None:
        hooks.append(writer)
    first = checkpoint.shot + 1 if checkpoint is not None else 1
    return logs + run_shots(method, session, hooks=hooks, first_shot=first)


def _save(output: RunOutput, session: PruningSession, inputs: RunInputs, config: RunConfig,
          report: dict[str, Any], started: float) -> None:
    """Write the output into the work folder, then rename it to ``config.out``."""
    folder = output.start_output()
    try:
        if config.save_model:
            _save_model(config, session.model, inputs.tokenizer, Path(folder), report)
        fault_point("final-save")
        write_json(folder / "run_config.json", config.to_dict())
        save_masks({s.pm.name: s.mask for s in session.states}, Path(folder) / MASKS_FILE)
        if inputs.conversations is not None:
            write_jsonl(folder / CONVERSATIONS, inputs.conversations)
            report["calibration"]["conversations"]["file"] = CONVERSATIONS
        report["seconds_total"] = time.perf_counter() - started
        report["peak_rss_mb"] = peak_rss_mb()
        write_json(folder / "report.json", report)
    except OSError as exc:
        raise OutputError(f"could not write the output {config.out!r}: {exc}; "
                          "any earlier output there is unchanged") from exc
    output.commit()


def _run(config: RunConfig, resolved: ResolvedRun, given: _Inputs, progress: bool, started: float,
         output: RunOutput | None) -> dict:
    inputs = _inputs(config, given, output)
    model = _load(config, given)
    totals: dict[str, float] = {"load": time.perf_counter() - started}
    rss_after_load = peak_rss_mb()  # RSS high-water mark; shots record their own
    complete_calibration(inputs, config, model, output, totals, progress=progress)  # before any pruning
    inputs.calibration = my_share(inputs.calibration, inputs.calibration_info)
    tokenizer, windows = inputs.tokenizer, inputs.windows
    evaluate = _Evaluation(config, windows, progress, totals)
    if output is not None and "ppl_before" in output.info:
        ppl_before = output.info["ppl_before"]  # measured before the interruption
    else:
        ppl_before = evaluate.dense(model)
        if output is not None:
            output.record(ppl_before=ppl_before)

    identity = ppl_cache.outputs_identity(config.model, config.dtype, config.device)
    with fidelity_check(config.fidelity, identity, model, tokenizer, totals,
                        progress=progress) as measure_fidelity:
        method, session = build_session(config, resolved, model, inputs.calibration, progress)
        shot_logs = _shots(method, session, evaluate, output)
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

    report = build_report(config, resolved, session, shot_logs, calibration_info=inputs.calibration_info,
                          ppl_before=ppl_before, ppl_after=ppl_after, totals=totals, started=started,
                          final_lora=final_lora, evaluation_info=inputs.evaluation_info, fidelity=fidelity)
    report["peak_rss_mb_after"] = {"load": rss_after_load}
    if config.downstream.tasks:
        report["downstream"] = run_tasks(model, tokenizer, config.downstream)
        totals["downstream"] = report["downstream"]["seconds"]
        log.info("downstream after pruning: %s", accuracy_line(report["downstream"]))
    comm = current()
    if comm.distributed:
        report["distributed"] = {
            "world_size": comm.size, "backend": comm.backend,
            "communication": comm.traffic.since(Traffic()),
            "peak_rss_mb_per_rank": comm.gather_objects(peak_rss_mb()),
        }
    if output is not None:
        report["resumed_after"] = output.info.get("resumed_after", [])
        _save(output, session, inputs, config, report, started)
    elif config.out and comm.distributed:
        report["resumed_after"] = []  # what rank 0 writes (resuming is refused under torchrun)
    return report


def _save_model(config: RunConfig, model: nn.Module, tokenizer: Any, folder: Path, report: dict) -> None:
    """Write the pruned model as ``config.save`` says; a compact plan goes into the report."""
    if config.save in ("zeroed", "both"):
        save_model(model, tokenizer, folder)
    if config.save in ("compact", "both"):
        from llm_surgeon.export import save_compact  # transformers' model classes: import on use

        target = folder / "compact" if config.save == "both" else folder
        plan = save_compact(model, tokenizer, target, source={"model": config.model, "method": config.method,
                                                            "structure": config.structure})
        report["compact"] = {k: v for k, v in plan.to_dict().items() if k != "layers"}
        report["compact"]["folder"] = str(target.relative_to(folder)) if target != folder else "."
