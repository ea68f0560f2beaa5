"""Benchmark records: one JSON file per run under ``bench/results/runs/``.

A record condenses a pruning report (:func:`llm_surgeon.run.runner.prune`) into what the
tables and figures need, plus provenance. Records are identified by a *key*, a hash
of the profile, the run id and the run's settings (excluding where data and outputs
live), so that a profile can be resumed: runs with a successful record of the same
key are skipped.

Time is split into phases (seconds): ``load`` (model), ``passes`` (calibration
forward/backward passes for the curvature), ``algebra`` (curvature factors:
eigendecompositions, inverses), ``solver`` (costs, threshold, weight updates),
``lora`` (first-order corrections), ``eval`` (perplexity), and ``other`` (the rest:
data preparation, validation, bookkeeping). ``outside_passes_ratio`` is the share of
the total spent outside forward/backward passes, counting calibration passes,
evaluation and LoRA training steps as passes; ``outside_passes_ratio_excl_load`` is the
same share with model loading left out of the total.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import math
import traceback as tb
from collections.abc import Iterable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

RECORD_VERSION = 1
#: Phases of :data:`seconds`, in display order.
PHASES = ("load", "generation", "passes", "algebra", "solver", "lora", "eval", "fidelity", "other")
#: Phases only recorded when a run had them (chat self-generation, fidelity checks).
OPTIONAL_PHASES = ("generation", "fidelity")
#: Phases counted as forward/backward passes in ``outside_passes_ratio``.
PASS_PHASES = ("generation", "passes", "eval", "lora", "fidelity")
#: Fidelity fields kept in a record (the summary; examples go to their own fields).
FIDELITY_FIELDS = ("kl", "match_rate", "positions", "question_accuracy", "dense_question_accuracy",
                   "questions", "heldout_prompts", "response_tokens")
#: Held-out responses kept per record, next to the dense model's.
FIDELITY_EXAMPLES = 8
#: Config keys that say where things live, not what is computed (excluded from keys).
_LOCATION_KEYS = ("out", "save_model", "save")


#: Settings added after records existed, left out of the key at the default that
#: reproduces those records, so that their keys stay valid: key path -> default.
_ADDED_DEFAULTS: dict[tuple[str, ...], Any] = {
    ("calibration", "bos"): "auto",
    ("evaluation", "bos"): "auto",
    ("downstream",): {"tasks": [], "tasks_dir": None, "limit": None, "num_fewshot": 0, "batch_size": 1},
    ("fidelity",): {"enabled": False, "prompts": None, "response_tokens": 32, "questions": None,
                    "answer_tokens": 32, "batch_size": 16},
    ("calibration", "chat"): {"file": None, "prompts": None, "max_prompts": None, "max_new_tokens": 128,
                              "temperature": 0.7, "top_p": 0.9, "batch_size": 16},
}


def _drop_default(config: dict[str, Any], path: tuple[str, ...], default: Any) -> dict[str, Any]:
    head, *rest = path
    if head not in config:
        return config
    if rest:
        if not isinstance(config[head], dict):
            return config
        return {**config, head: _drop_default(config[head], tuple(rest), default)}
    return {k: v for k, v in config.items() if k != head} if config[head] == default else config


def _strip_locations(config: dict[str, Any]) -> dict[str, Any]:
    config = {k: v for k, v in config.items() if k not in _LOCATION_KEYS}
    for path, default in _ADDED_DEFAULTS.items():
        config = _drop_default(config, path, default)
    for section in ("calibration", "evaluation"):
        if isinstance(config.get(section), dict) and isinstance(config[section].get("data"), dict):
            data = {k: v for k, v in config[section]["data"].items() if k != "data_dir"}
            config[section] = {**config[section], "data": data}
    return config


def run_key(profile: str, run_id: str, config: dict[str, Any], *, simulate: bool = False) -> str:
    """Hash of what a run computes: profile, run id and settings (not data/output folders).

    ``config`` should be the full dictionary of ``RunConfig.to_dict()`` so that defaults
    are part of the key (except those of settings added later, :data:`_ADDED_DEFAULTS`);
    ``simulate`` marks runs on random weights (:mod:`bench.simulate`).
    """
    payload: dict[str, Any] = {"profile": profile, "run_id": run_id, "config": _strip_locations(config)}
    if simulate:
        payload["simulate"] = True
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def now() -> str:
    """The current UTC time, ISO 8601 with seconds."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _finite(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def split_seconds(report: dict[str, Any]) -> dict[str, float]:
    """Seconds per phase (:data:`PHASES`; the optional ones only if run) and ``total``."""
    totals = report.get("seconds") or {}
    total = float(report.get("seconds_total") or sum(totals.values()))
    seconds = {p: float(totals.get(p, 0.0)) for p in PHASES
               if p != "other" and (p not in OPTIONAL_PHASES or p in totals)}
    seconds["other"] = max(0.0, total - sum(seconds.values()))
    seconds["total"] = total
    return seconds


def outside_passes_ratio(seconds: dict[str, float], *, exclude_load: bool = False) -> float | None:
    """Share of the total time spent outside forward/backward passes.

    Args:
        seconds: from :func:`split_seconds`.
        exclude_load: leave model loading out of the total (the pruning loop's own share).
    """
    total = seconds.get("total", 0.0) - (seconds.get("load", 0.0) if exclude_load else 0.0)
    if total <= 0:
        return None
    inside = sum(seconds.get(p, 0.0) for p in PASS_PHASES)
    return max(0.0, 1.0 - inside / total)


def _shots(report: dict[str, Any]) -> list[dict[str, Any]]:
    shots = []
    for entry in report.get("shot_log") or []:
        info = entry.get("info") or {}
        shots.append({
            "shot": entry.get("shot"),
            "target": entry.get("target"),
            "achieved": entry.get("achieved"),
            "seconds": entry.get("seconds") or {},
            "predicted_cost": entry.get("predicted_cost"),
            "ppl": _finite(info.get("ppl")),
            "curvature_mb": info.get("curvature_mb"),
            "curvature_passes": info.get("curvature_passes"),
            "peak_rss_mb_after": info.get("peak_rss_mb_after"),
            "real_size": info.get("real_size"),
            "dead_freed": info.get("dead_freed"),
            "communication": info.get("communication"),
        })
    return shots


def _calibration(report: dict[str, Any]) -> dict[str, Any]:
    calibration = report.get("calibration") or {}
    chat = calibration.get("conversations") or {}
    keep = ("source", "prompts", "conversations", "tokens", "windows_available", "finished", "cache",
            "seconds")
    return {"nsamples": calibration.get("nsamples"), "seqlen": calibration.get("seqlen"),
            "data": (calibration.get("data") or {}).get("dataset"),
            "split": calibration.get("split_used") or (calibration.get("data") or {}).get("split"),
            "sources": calibration.get("sources"),
            "conversations": {k: chat.get(k) for k in keep} if chat else None,
            "note": calibration.get("note")}


def _fidelity(report: dict[str, Any]) -> dict[str, Any]:
    """``fidelity`` (summary), ``fidelity_heldout`` and ``fidelity_answers`` record fields."""
    fidelity = report.get("fidelity")
    if not fidelity:
        return {}
    answers = [{k: a.get(k) for k in ("id", "model", "correct", "dense", "dense_correct")}
               for a in fidelity.get("answers") or []]
    return {"fidelity": {k: fidelity.get(k) for k in FIDELITY_FIELDS},
            "fidelity_heldout": (fidelity.get("heldout") or [])[:FIDELITY_EXAMPLES],
            "fidelity_answers": answers}


def _modules(report: dict[str, Any]) -> list[dict[str, Any]]:
    keep = ("name", "layer", "role", "parameters", "remaining")
    return [{k: m.get(k) for k in keep} for m in report.get("modules") or []]


def _common(run: Any, key: str, started_at: str, extra: dict[str, Any]) -> dict[str, Any]:
    config = run.config
    return {
        "record_version": RECORD_VERSION,
        "profile": run.profile,
        "run_id": run.id,
        "key": key,
        "started_at": started_at,
        "finished_at": now(),
        "model": config.get("model"),
        "method": config.get("method"),
        "structure": config.get("structure"),
        "target_size": config.get("target_size"),
        "shots": config.get("shots"),
        "lora": bool((config.get("lora") or {}).get("enabled")),
        **extra,
        "config": config,
    }


def from_report(run: Any, key: str, report: dict[str, Any], *, started_at: str,
                provenance: dict[str, Any]) -> dict[str, Any]:
    """A successful run's record.

    Args:
        run: the :class:`~bench.profiles.BenchRun` (``profile``, ``id``, ``config``).
        key: :func:`run_key` of the run.
        report: the dictionary returned by ``llm_surgeon.run.runner.prune``.
        started_at: ISO time the run started.
        provenance: ``git``, ``machine``, ``model_mb`` and ``wall_seconds`` entries.
    """
    seconds = split_seconds(report)
    shots = _shots(report)
    curvature_mb = [s["curvature_mb"] for s in shots if s["curvature_mb"] is not None]
    evaluation = report.get("evaluation") or {}
    return _common(run, key, started_at, {
        "status": "ok",
        "simulated": bool(report.get("simulated")),
        "curvature": report.get("curvature"),
        "update": report.get("update"),
        "damping": report.get("damping"),
        "achieved_size": report.get("achieved_size"),
        "real_size": report.get("real_size"),
        "real_parameters": report.get("real_parameters"),
        "calibration": _calibration(report),
        "evaluation": {"windows": evaluation.get("windows"), "seqlen": evaluation.get("seqlen"),
                       "split": (evaluation.get("data") or {}).get("split"),
                       "every_shot": evaluation.get("every_shot", False)},
        "ppl_before": _finite(report.get("ppl_before")),
        "ppl_after": _finite(report.get("ppl_after")),
        **_fidelity(report),
        "seconds": seconds,
        "outside_passes_ratio": outside_passes_ratio(seconds),
        "outside_passes_ratio_excl_load": outside_passes_ratio(seconds, exclude_load=True),
        "peak_rss_mb": report.get("peak_rss_mb"),
        "peak_rss_mb_after": report.get("peak_rss_mb_after"),
        "model_mb": provenance.get("model_mb"),
        "curvature_mb": max(curvature_mb) if curvature_mb else None,
        "prunable_parameters": report.get("prunable_parameters"),
        "shot_log": shots,
        "distributed": report.get("distributed"),
        "modules": _modules(report),
        "versions": report.get("versions") or {},
        "git": provenance.get("git"),
        "machine": provenance.get("machine"),
        "wall_seconds": provenance.get("wall_seconds"),
    })


def failed(run: Any, key: str, error: BaseException | str, *, started_at: str,
           provenance: dict[str, Any], traceback: str | None = None) -> dict[str, Any]:
    """A failed run's record, with the error message and traceback."""
    if isinstance(error, BaseException):
        message = f"{type(error).__name__}: {error}"
        traceback = traceback or "".join(tb.format_exception(error))
    else:
        message = str(error)
    return _common(run, key, started_at, {
        "status": "failed",
        "error": message,
        "traceback": traceback,
        "git": provenance.get("git"),
        "machine": provenance.get("machine"),
        "wall_seconds": provenance.get("wall_seconds"),
    })


# -- storage -----------------------------------------------------------------------

def runs_dir(results_dir: str | Path) -> Path:
    """Folder of the JSON records inside a results folder."""
    return Path(results_dir) / "runs"


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-._" else "_" for c in name)


#: Record fields written one item per line (the rest: one field per line).
_LISTS_BY_LINE = ("shot_log", "modules", "fidelity_heldout", "fidelity_answers")


def dumps(record: dict[str, Any]) -> str:
    """JSON text of a record: one line per field, and per item of long lists (diff-friendly)."""
    items = []
    for key, value in record.items():
        if key.startswith("_"):
            continue
        if key in _LISTS_BY_LINE and isinstance(value, list) and value:
            body = ",\n".join("  " + json.dumps(v, default=str) for v in value)
            text = "[\n" + body + "\n ]"
        else:
            text = json.dumps(value, default=str)
        items.append(f" {json.dumps(key)}: {text}")
    return "{\n" + ",\n".join(items) + "\n}\n"


def write(results_dir: str | Path, record: dict[str, Any]) -> Path:
    """Store ``record`` as ``runs/<profile>__<run id>__<UTC timestamp>.json`` (never overwrites)."""
    folder = runs_dir(results_dir)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.fromisoformat(record["finished_at"]).strftime("%Y%m%dT%H%M%SZ")
    stem = f"{_safe(record['profile'])}__{_safe(record['run_id'])}__{stamp}"
    path = folder / f"{stem}.json"
    n = 1
    while path.exists():
        n += 1
        path = folder / f"{stem}-{n}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(dumps(record))
    tmp.replace(path)
    return path


def load_all(results_dir: str | Path) -> list[dict[str, Any]]:
    """Every record under ``results_dir``, oldest first (unreadable files are skipped)."""
    found: list[tuple[str, int, dict[str, Any]]] = []
    for path in sorted(runs_dir(results_dir).glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            log.warning("skipping unreadable record %s: %s", path, exc)
            continue
        if isinstance(record, dict) and "run_id" in record:
            record["_path"] = str(path)
            found.append((record.get("finished_at") or "", path.stat().st_mtime_ns, record))
    found.sort(key=lambda item: item[:2])
    return [record for *_, record in found]


def completed_keys(records: Iterable[dict[str, Any]]) -> set[str]:
    """Keys of the successful records (failed runs are retried on resume)."""
    return {r["key"] for r in records if r.get("status") == "ok" and r.get("key")}


def latest(records: Iterable[dict[str, Any]], profile: str | None = None) -> list[dict[str, Any]]:
    """The newest record of each ``(profile, run id)``, preferring successful ones.

    The result keeps first-appearance order of the runs.
    """
    chosen: dict[tuple[str, str], dict[str, Any]] = {}
    for record in records:
        if profile is not None and record.get("profile") != profile:
            continue
        slot = (record.get("profile"), record.get("run_id"))
        old = chosen.get(slot)
        if old is None or record.get("status") == "ok" or old.get("status") != "ok":
            chosen[slot] = record
    return list(chosen.values())
