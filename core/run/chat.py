"""What a run computes from the dense model before pruning, cached on disk.

* the ``chat`` calibration conversations: read from ``calibration.chat.file``, or
  self-generated (the dense model answers the seed prompts by seeded sampling);
* the dense reference of fidelity checks (:mod:`llm_surgeon.data.reference`).

Both are cached in the folder of :mod:`llm_surgeon.run.ppl_cache` (``LLM_SURGEON_CACHE``;
``off`` disables it), keyed by the model's files, dtype and device type, the settings,
the rendered prompts and the torch and transformers versions. Models from the hub are
not cached (their files may change).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from llm_surgeon.data.config import CalibrationConfig, FidelityConfig
from llm_surgeon.data.conversations import (
    SEED_PROMPTS,
    Messages,
    bundled,
    load_conversations,
    read_jsonl,
    render_ids,
    require_chat_template,
)
from llm_surgeon.data.generation import self_generate
from llm_surgeon.data.mixture import uses_chat
from llm_surgeon.data.reference import DenseReference, build_reference, fidelity_set, load_reference
from llm_surgeon.errors import ConfigError
from llm_surgeon.run.ppl_cache import cache_folder
from llm_surgeon.util.io import write_jsonl
from llm_surgeon.util.resources import library_versions

if TYPE_CHECKING:
    from torch import nn
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)


def _key(kind: str, identity: list | None, payload: Any) -> str | None:
    """A cache key, or ``None`` when the model is not local or caching is off."""
    if identity is None or cache_folder() is None:
        return None
    versions = {k: v for k, v in library_versions().items() if k in ("torch", "transformers")}
    text = json.dumps([kind, identity, versions, payload], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def seed_prompts(cal: CalibrationConfig) -> list[Messages]:
    """The seed prompts of self-generated chat calibration (the first ``max_prompts``)."""
    source = cal.chat.prompts if cal.chat.prompts is not None else bundled(SEED_PROMPTS)
    return load_conversations(source, prompts=True)[: cal.chat.max_prompts]


def _generated(cal: CalibrationConfig, model: nn.Module, tokenizer: PreTrainedTokenizerBase,
               identity: list | None, progress: bool) -> tuple[list[dict], dict[str, Any]]:
    prompts = seed_prompts(cal)
    ids = [render_ids(tokenizer, p, add_generation_prompt=True) for p in prompts]
    key = _key("chat", identity, [attrs.asdict(cal.chat), cal.seed, ids])
    path = cache_folder() / f"chat-{key}.jsonl" if key else None
    info: dict[str, Any] = {"source": "self-generated", "prompts": len(prompts), "seed": cal.seed,
                            "cache": "off" if key is None else "hit"}
    if path is not None and path.is_file():
        records = read_jsonl(path)
        if len(records) == len(prompts):
            return records, {**info, "cache_file": str(path)}
    start = time.perf_counter()
    records = self_generate(model, tokenizer, prompts, cal.chat, cal.seed, progress=progress)
    info["seconds"] = time.perf_counter() - start
    if path is not None:
        info.update(cache="miss", cache_file=str(path))
        with contextlib.suppress(OSError):  # best effort
            write_jsonl(path, records)
    return records, info


def calibration_conversations(cal: CalibrationConfig, model: nn.Module, tokenizer: PreTrainedTokenizerBase,
                              identity: list | None, *, progress: bool = True
                              ) -> tuple[list[dict] | None, dict[str, Any]]:
    """The conversations of a calibration that uses ``chat`` (``None, {}`` if it does not).

    Args:
        cal: the calibration settings.
        model: the dense model (used only to self-generate).
        tokenizer: its tokenizer (must have a chat template).
        identity: :func:`llm_surgeon.run.ppl_cache.outputs_identity` of the model (cache key).
        progress: show a progress bar while generating.

    Returns:
        ``(records, info)``: records ``{"messages": [...], ...}`` and ``source``
        (``file`` or ``self-generated``), ``prompts``, ``cache`` (``hit``, ``miss`` or ``off``),
        ``seconds`` of generation, ``finished`` (replies that ended before the length limit).
    """
    if not uses_chat(cal.data.dataset):
        return None, {}
    require_chat_template(tokenizer)
    if cal.chat.file is not None:
        records = [{"messages": m} for m in load_conversations(cal.chat.file)]
        return records, {"source": "file", "file": cal.chat.file}
    records, info = _generated(cal, model, tokenizer, identity, progress)
    info["finished"] = sum(bool(r.get("finished")) for r in records)
    return records, info


def _reference_key(identity: list | None, config: FidelityConfig, tokenizer: PreTrainedTokenizerBase) -> str | None:
    fs = fidelity_set(tokenizer, config)
    settings = attrs.asdict(attrs.evolve(config, enabled=True))
    return _key("fidelity", identity, [settings, fs.prompt_ids, fs.question_ids])


def _build_into(folder: Path, load: Callable[[], tuple[nn.Module, PreTrainedTokenizerBase]],
                tokenizer: PreTrainedTokenizerBase, config: FidelityConfig, progress: bool) -> None:
    model, dense_tokenizer = load()
    require_chat_template(dense_tokenizer)
    if fidelity_set(dense_tokenizer, config).prompt_ids != fidelity_set(tokenizer, config).prompt_ids:
        raise ConfigError("the reference model's tokenizer renders the prompts differently from the "
                          "model's; a fidelity reference must share the model's tokenizer")
    build_reference(model, dense_tokenizer, config, folder, progress=progress)


@contextlib.contextmanager
def dense_reference(identity: list | None, config: FidelityConfig, tokenizer: PreTrainedTokenizerBase,
                    load: Callable[[], tuple[nn.Module, PreTrainedTokenizerBase]], *,
                    progress: bool = True) -> Iterator[tuple[DenseReference, dict[str, Any]]]:
    """The dense reference, from the cache or computed (into the cache or a temporary folder).

    Args:
        identity: :func:`~llm_surgeon.run.ppl_cache.outputs_identity` of the dense model.
        config: the fidelity settings.
        tokenizer: the tokenizer of the model that will be compared (renders the prompts).
        load: returns the dense ``(model, tokenizer)``; called only when not cached.
        progress: show progress bars.

    Yields:
        ``(reference, info)`` with ``info``: ``cache`` (``hit``, ``miss``, ``off``), ``seconds``.
    """
    require_chat_template(tokenizer)
    key = _reference_key(identity, config, tokenizer)
    start = time.perf_counter()
    if key is None:
        with tempfile.TemporaryDirectory(prefix="llm-surgeon-fidelity-") as tmp:
            _build_into(Path(tmp), load, tokenizer, config, progress)
            yield load_reference(tmp), {"cache": "off", "seconds": time.perf_counter() - start}
        return
    folder = cache_folder() / f"fidelity-{key}"
    reference, info = load_reference(folder), {"cache": "hit", "cache_folder": str(folder)}
    if reference is None:
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".fidelity-{key}-", dir=folder.parent))
        try:
            _build_into(staging, load, tokenizer, config, progress)
            shutil.rmtree(folder, ignore_errors=True)
            os.replace(staging, folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        reference, info["cache"] = load_reference(folder), "miss"
    yield reference, {**info, "seconds": time.perf_counter() - start}


@contextlib.contextmanager
def fidelity_check(config: FidelityConfig, identity: list | None, model: nn.Module,
                   tokenizer: PreTrainedTokenizerBase, totals: dict[str, float], *,
                   progress: bool = True) -> Iterator[Callable[[], dict[str, Any] | None]]:
    """Take the dense reference of ``model`` now; yield a function that measures it later.

    Called before pruning, the yielded function measures the pruned ``model`` against
    the model as it was (:func:`llm_surgeon.data.fidelity.measure_fidelity`) and returns
    the result with the reference's cache info; it returns ``None`` when
    ``config.enabled`` is off. Seconds go to ``totals["fidelity"]``.
    """
    from llm_surgeon.data.fidelity import measure_fidelity

    if not config.enabled:
        yield lambda: None
        return
    with dense_reference(identity, config, tokenizer, lambda: (model, tokenizer),
                         progress=progress) as (reference, info):
        totals["fidelity"] = totals.get("fidelity", 0.0) + info["seconds"]

        def measure() -> dict[str, Any]:
            start = time.perf_counter()
            result = measure_fidelity(model, tokenizer, config, reference, progress=progress)
            totals["fidelity"] += time.perf_counter() - start
            return {**result, "reference": info}

        yield measure
