"""Zero-shot downstream evaluation of in-memory causal LMs with lm-evaluation-harness.

lm-eval's own machinery does the work: its task index (built-in tasks plus the local
YAMLs of ``tasks_dir``), its datasets loading (local ``json``/``csv`` data files work
without a hub) and its HF wrapper, which accepts a loaded model, so pruned and
compact-exported models are evaluated as they are in memory. The hub is switched off
for the call: a task whose data is not available locally fails at once with an error
that names the dataset and says how to point lm-eval to a local copy.
:func:`check_tasks` runs those checks before a model is loaded.

::

    from llm_surgeon.data.config import TasksConfig
from llm_surgeon.data.hub import hub_offline
    result = run_tasks(model, tokenizer, TasksConfig(tasks=["piqa_local"], tasks_dir="my_tasks"))
    result["tasks"]["piqa_local"]["metrics"]["acc"]
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from llm_surgeon.data.config import TasksConfig
from llm_surgeon.data.hub import hub_offline
from llm_surgeon.data.tasks_support import (
    TaskDataUnavailableError,
    TaskNotFoundError,
    failing_dataset,
    require_lm_eval,
    suggest,
    summarise,
    task_manager,
    task_spec,
)
from llm_surgeon.errors import ConfigError


def _include_path(config: TasksConfig) -> str | None:
    if config.tasks_dir is None:
        return None
    folder = Path(config.tasks_dir).expanduser().resolve()
    if not folder.is_dir():
        raise ConfigError(f"--tasks-dir {config.tasks_dir!r} is not a folder")
    return str(folder)


def resolve_tasks(config: TasksConfig) -> tuple[Any, list[str | dict[str, Any]]]:
    """lm-eval's task manager and the task specs of ``config``.

    The built-in index (about 10 s to build) is only read when a name is not among the
    local tasks of ``tasks_dir``.

    Raises:
        EvalDependencyError: lm-eval is not installed.
        TaskNotFoundError: a name is unknown (the message lists similar names).
    """
    require_lm_eval()
    if not config.tasks:
        raise ConfigError("no downstream tasks given")
    include = _include_path(config)
    tm = task_manager(include, False) if include else None
    if tm is None or any(name not in tm.task_index for name in config.tasks):
        tm = task_manager(include, True)
    for name in config.tasks:
        if name not in tm.task_index:
            known = tm.all_tasks
            raise TaskNotFoundError(name, suggest(name, known), len(known), True)
    return tm, [task_spec(tm, name) for name in config.tasks]


def _wrap_data_errors(exc: Exception, offline: bool) -> None:
    failing = failing_dataset(exc)
    if failing is not None:
        raise TaskDataUnavailableError(**failing, cause=exc, offline=offline) from exc


def check_tasks(config: TasksConfig, *, offline: bool = True) -> None:
    """Check names and load every task's data, without a model (before weights are loaded).

    Raises:
        EvalDependencyError, TaskNotFoundError, TaskDataUnavailableError: all
        :class:`ConfigError`\\ s.
    """
    tm, specs = resolve_tasks(config)
    try:
        with hub_offline(offline):
            tm.load(specs)
    except ConfigError:
        raise
    except Exception as exc:
        _wrap_data_errors(exc, offline)
        raise


def run_tasks(model: Any, tokenizer: Any, config: TasksConfig, *, offline: bool = True) -> dict[str, Any]:
    """Evaluate an in-memory transformers causal LM on lm-eval tasks; a JSON-able dict.

    Args:
        model: a loaded causal LM (left on its device; its train/eval mode is restored).
        tokenizer: its tokenizer (lm-eval may set a pad token on it).
        config: tasks, local task folder, limit, few-shot examples, batch size.
        offline: switch the Hugging Face hub off during the call.

    Returns:
        ``{"lm_eval_version", "settings", "requested", "tasks", "groups", "seconds"}``;
        ``tasks[name]`` has ``metrics`` (``acc``, ``acc_stderr``, ``acc_norm``...),
        ``n_samples``, ``n_samples_total``, ``num_fewshot``, ``version``,
        ``higher_is_better`` and ``dataset``.
    """
    lm_eval = require_lm_eval()
    from lm_eval.models.huggingface import HFLM

    start = time.perf_counter()
    tm, specs = resolve_tasks(config)
    if getattr(tokenizer, "bos_token_id", None) is None and getattr(tokenizer, "eos_token_id", None) is None:
        raise ConfigError("lm-eval needs a tokenizer with a BOS or EOS token (used as prefix)")
    was_training = bool(getattr(model, "training", False))
    try:
        with hub_offline(offline):
            lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=config.batch_size)
            raw = lm_eval.simple_evaluate(model=lm, tasks=specs, num_fewshot=config.num_fewshot,
                                          limit=config.limit, task_manager=tm, log_samples=False)
    except ConfigError:
        raise
    except Exception as exc:
        _wrap_data_errors(exc, offline)
        raise
    finally:
        model.train(was_training)
    if raw is None:  # pragma: no cover - only non-zero ranks of a distributed run
        raise RuntimeError("lm-eval returned no results (not rank 0?)")
    run_cfg = raw.get("config") or {}
    settings = {"tasks": list(config.tasks), "tasks_dir": _include_path(config), "limit": config.limit,
                "num_fewshot": config.num_fewshot, "batch_size": config.batch_size, "offline": offline,
                "seeds": {k: run_cfg.get(k) for k in ("random_seed", "numpy_seed", "torch_seed",
                                                       "fewshot_seed")}}
    return {"lm_eval_version": getattr(lm_eval, "__version__", "unknown"), "settings": settings,
            **summarise(raw, list(config.tasks)), "seconds": time.perf_counter() - start}


def accuracy_line(result: dict[str, Any]) -> str:
    """``task acc 0.650 (acc_norm 0.600), ...`` for a summary line."""
    parts = []
    for name, task in result["tasks"].items():
        m = task["metrics"]
        text = f"{name} acc {m['acc']:.3f}" if m.get("acc") is not None else name
        if m.get("acc_norm") is not None:
            text += f" (acc_norm {m['acc_norm']:.3f})"
        parts.append(text)
    return ", ".join(parts)
