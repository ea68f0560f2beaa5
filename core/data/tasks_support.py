r"""lm-evaluation-harness support: errors, offline mode, task resolution, result summaries.

lm-eval is an optional dependency (``pip install 'llm-surgeon[eval]'``) imported lazily,
so importing this module never needs it. The errors are :class:`ConfigError`\ s: they are
raised while checking a run, before any weights are loaded (CLI exit code 2).
"""

from __future__ import annotations

import difflib
import functools
import math
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any

from llm_surgeon.errors import ConfigError

INSTALL_HINT = "pip install 'llm-surgeon[eval]'"
_LOCAL_BUILDERS = {"json", "csv", "parquet", "text", "arrow"}


class EvalDependencyError(ConfigError, ImportError):
    """lm-evaluation-harness is not installed."""


class TaskNotFoundError(ConfigError):
    """A requested task, group or tag name is not known to lm-eval."""

    def __init__(self, name: str, suggestions: list[str], n_known: int, defaults: bool) -> None:
        self.name = name
        self.suggestions = suggestions
        if suggestions:
            hint = "Similar names: " + ", ".join(suggestions) + "."
        else:
            hint = "No similar names found."
        scope = "built-in and include_path" if defaults else "include_path (built-ins excluded)"
        super().__init__(f"Unknown lm-eval task {name!r} among {n_known} {scope} tasks. {hint}")


class TaskDataUnavailableError(ConfigError):
    """A task's dataset could not be loaded (typically: hub unreachable, no local copy)."""

    def __init__(
        self,
        task: str | None,
        dataset_path: str | None,
        dataset_name: str | None,
        *,
        cause: BaseException,
        offline: bool,
        split: str | None = None,
        config_source: str | None = None,
    ) -> None:
        self.task = task
        self.dataset_path = dataset_path
        self.dataset_name = dataset_name
        self.split = split
        self.config_source = config_source
        where = f"dataset_path={dataset_path!r}"
        if dataset_name:
            where += f", dataset_name={dataset_name!r}"
        if split:
            where += f", split {split!r}"
        mode = " with hub access off (offline=True)" if offline else ""
        source = f" (config: {config_source})" if config_source else ""
        head = (
            f"Could not load the data of lm-eval task {task or '?'!r}{mode}: "
            f"{type(cause).__name__}: {_first_line(cause)}\n"
        )
        if dataset_path in _LOCAL_BUILDERS:
            super().__init__(
                head + f"  The task reads local files ({where}); check dataset_kwargs.data_files "
                f"in its YAML{source}: relative paths are taken from the YAML's folder when the "
                "file exists there, otherwise from the working directory."
            )
            return
        super().__init__(
            head + f"  It needs the Hugging Face dataset {where}.\n"
            "  To run offline, export that split to JSONL (one record per line, same fields) "
            f"and write a local task YAML that copies the task's config{source} under a new "
            "task name, but with\n"
            "      dataset_path: json\n"
            "      dataset_name: null\n"
            "      dataset_kwargs:\n"
            "        data_files:\n"
            f"          {split or 'validation'}: my_copy.jsonl   # relative to the YAML file\n"
            "  then pass its folder with --tasks-dir (Python: include_path=)."
        )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "(no message)"


def require_lm_eval() -> ModuleType:
    """Import lm_eval or raise an error that tells how to install it."""
    try:
        import lm_eval
    except ImportError as exc:
        raise EvalDependencyError(
            f"Downstream evaluation needs lm-evaluation-harness: {INSTALL_HINT}"
        ) from exc
    return lm_eval


@functools.lru_cache(maxsize=8)
def task_manager(include_path: str | None, include_defaults: bool) -> Any:
    """Build (and cache) an lm-eval TaskManager; indexing the built-ins takes seconds."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=include_path, include_defaults=include_defaults)


def suggest(name: str, known: list[str], n: int = 8) -> list[str]:
    close = difflib.get_close_matches(name, known, n=n, cutoff=0.6)
    contains = sorted((k for k in known if name.lower() in k.lower()), key=len)
    out: list[str] = []
    for cand in close + contains:
        if cand not in out:
            out.append(cand)
    return out[:n]


def _absolute_data_files(data_files: Any, base: Path) -> Any:
    """Make relative local ``data_files`` entries absolute against ``base`` when they exist."""
    if isinstance(data_files, str):
        if "://" in data_files or Path(data_files).is_absolute():
            return data_files
        candidate = base / data_files
        return str(candidate) if candidate.exists() else data_files
    if isinstance(data_files, list | tuple):
        return [_absolute_data_files(item, base) for item in data_files]
    if isinstance(data_files, Mapping):
        return {split: _absolute_data_files(v, base) for split, v in data_files.items()}
    return data_files


def task_spec(tm: Any, name: str) -> str | dict[str, Any]:
    """Return ``name``, or a full inline config when its YAML has relative ``data_files``."""
    entry = tm.task_index.get(name)
    cfg = getattr(entry, "cfg", None) or {}
    yaml_path = getattr(entry, "yaml_path", None)
    data_files = (cfg.get("dataset_kwargs") or {}).get("data_files")
    if yaml_path is None or data_files is None:
        return name
    resolved = _absolute_data_files(data_files, Path(yaml_path).parent)
    if resolved == data_files:
        return name
    from lm_eval.tasks._yaml_loader import load_yaml  # resolves !function and include:

    full = load_yaml(yaml_path, resolve_func=True)
    full["dataset_kwargs"] = {**(full.get("dataset_kwargs") or {}), "data_files": resolved}
    return full


def failing_dataset(exc: BaseException) -> dict[str, Any] | None:
    """Describe the task config whose data loading raised ``exc``; None if it was not that."""
    seen: set[int] = set()
    found: dict[str, Any] | None = None
    stack: list[BaseException | None] = [exc]
    while stack:
        err = stack.pop()
        if err is None or id(err) in seen:
            continue
        seen.add(id(err))
        tb: TracebackType | None = err.__traceback__
        while tb is not None:  # the innermost ConfigurableTask.download frame wins
            frame = tb.tb_frame
            config = getattr(frame.f_locals.get("self"), "config", None)
            if frame.f_code.co_name == "download" and hasattr(config, "dataset_path"):
                metadata = getattr(config, "metadata", None)
                found = {
                    "task": getattr(config, "task", None),
                    "dataset_path": config.dataset_path,
                    "dataset_name": getattr(config, "dataset_name", None),
                    "split": getattr(config, "test_split", None)
                    or getattr(config, "validation_split", None),
                    "config_source": metadata.get("config_source")
                    if isinstance(metadata, dict)
                    else None,
                }
            tb = tb.tb_next
        stack.extend([err.__cause__, err.__context__])
    return found


def _clean(value: Any) -> Any:
    """Turn lm-eval metric values into JSON-safe Python scalars (``"N/A"``/NaN -> None)."""
    if isinstance(value, str):
        return None if value.strip().upper() == "N/A" else value
    if hasattr(value, "item"):  # numpy / torch scalar
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _metrics(raw: Mapping[str, Any]) -> dict[str, Any]:
    """``{"acc,none": .., "acc_stderr,none": ..}`` -> ``{"acc": .., "acc_stderr": ..}``."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key in ("alias", "samples", " ") or "," not in key:
            continue
        metric, _, filt = key.partition(",")
        out[metric if filt == "none" else f"{metric},{filt}"] = _clean(value)
    return out


def summarise(raw: Mapping[str, Any], requested: list[str]) -> dict[str, Any]:
    configs = raw.get("configs") or {}
    n_samples = raw.get("n-samples") or {}
    raw_groups = raw.get("groups") or {}
    tasks: dict[str, Any] = {}
    for name, res in (raw.get("results") or {}).items():
        if name in raw_groups:
            continue
        cfg = configs.get(name, {})
        counts = n_samples.get(name, {})
        tasks[name] = {
            "metrics": _metrics(res),
            "n_samples": counts.get("effective"),
            "n_samples_total": counts.get("original"),
            "num_fewshot": (raw.get("n-shot") or {}).get(name),
            "version": _clean((raw.get("versions") or {}).get(name)),
            "higher_is_better": dict((raw.get("higher_is_better") or {}).get(name) or {}),
            "dataset": {
                "path": cfg.get("dataset_path"),
                "name": cfg.get("dataset_name"),
                "split": cfg.get("test_split") or cfg.get("validation_split"),
            },
        }
    subtasks = raw.get("group_subtasks") or {}
    groups = {
        name: {"metrics": _metrics(res), "tasks": list(subtasks.get(name) or [])}
        for name, res in raw_groups.items()
    }
    return {"requested": requested, "tasks": tasks, "groups": groups}


