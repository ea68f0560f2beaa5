"""A run's output folder: a work folder from the start, checkpoints in it, one rename at the end.

For ``out = OUT`` the run works in ``.OUT.partial`` (:class:`~llm_surgeon.util.partial.PartialFolder`):

* ``run_config.json``: the resolved config, written first (``--resume OUT`` reads it);
* ``run.json``: what the run measured once and must not redo or see change: the dense
  perplexity, a hash of the calibration windows, the model files' sizes and times;
* ``checkpoints/shot-NNN``: one per completed shot (:mod:`llm_surgeon.run.checkpoint`);
* ``calibration_conversations.jsonl``: the conversations of ``chat`` calibration, written
  once they are known (self-generated ones right after the weights load); a resumed run
  reads them instead of generating again, so its calibration windows stay the same;
* ``output/``: the finished output, renamed to ``OUT`` at the end.

A fresh run refuses to start over the work folder of an interrupted one (``--resume`` to
continue it, ``--overwrite`` to discard it). When a run fails or is interrupted, a
half-written ``output/`` is removed; the work folder is kept if it holds a checkpoint
(so that at most the shot in progress is lost) and removed otherwise.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from torch import Tensor

from llm_surgeon.data.conversations import read_jsonl
from llm_surgeon.errors import ConfigError
from llm_surgeon.run.checkpoint import (
    Checkpoint,
    CheckpointHook,
    latest_checkpoint,
    remove_incomplete,
)
from llm_surgeon.run.config import RunConfig
from llm_surgeon.run.ppl_cache import model_identity
from llm_surgeon.util.io import check_output_folder, to_plain, write_json, write_jsonl
from llm_surgeon.util.partial import PartialFolder, partial_path

log = logging.getLogger(__name__)

RUN_CONFIG = "run_config.json"
RUN_INFO = "run.json"
CHECKPOINTS = "checkpoints"
#: The calibration conversations (``chat`` calibration), in the work folder and the output.
CONVERSATIONS = "calibration_conversations.jsonl"


def calibration_sha256(calibration: Tensor) -> str:
    """SHA-256 of the calibration token ids ``(nsamples, seqlen)``."""
    return hashlib.sha256(calibration.cpu().contiguous().numpy().tobytes()).hexdigest()


def stored_config(out: str | Path) -> dict[str, Any]:
    """The config of the interrupted run of output ``out`` (plain data).

    Raises:
        ConfigError: there is no interrupted run of ``out`` to resume.
    """
    path = partial_path(out) / RUN_CONFIG
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        final = Path(out).expanduser().absolute()
        done = (final / "report.json").is_file()
        raise ConfigError(
            f"{str(final)!r} is complete: nothing to resume" if done else
            f"no interrupted run of {str(final)!r} to resume (no {str(path)!r})"
        ) from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {str(path)!r}: {exc}") from None


def _flat(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict) and data:
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(_flat(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: data}


def config_differences(stored: dict[str, Any], given: dict[str, Any]) -> list[str]:
    """``key: stored -> given`` for every dotted key whose value differs (``out`` aside)."""
    a, b = _flat(to_plain(stored)), _flat(to_plain(given))
    keys = sorted(k for k in set(a) | set(b) if k != "out" and a.get(k) != b.get(k))
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in keys]


class RunOutput:
    """The work folder of one run writing ``config.out``; see the module docstring."""

    def __init__(self, config: RunConfig, partial: PartialFolder, *, overwrite: bool, keep: str) -> None:
        self.config = config
        self.partial = partial
        self.overwrite = overwrite
        self.keep = keep
        self.info: dict[str, Any] = {}
        self.checkpoint: Checkpoint | None = None

    @property
    def checkpoints(self) -> Path:
        return self.partial.path / CHECKPOINTS

    @classmethod
    def start(cls, config: RunConfig, *, overwrite: bool = False, keep: str = "all") -> RunOutput:
        """A new work folder for ``config.out``; a stale one is an error unless ``overwrite``.

        Raises:
            ConfigError: ``out`` is not empty, or holds an interrupted run, and ``overwrite`` is off.
        """
        check_output_folder(config.out, overwrite=overwrite)
        partial = PartialFolder(config.out)
        if partial.exists():
            if not overwrite:
                partial.lock()  # another run in progress is named as such
                partial.release()
                last = latest_checkpoint(partial.path / CHECKPOINTS)
                where = f" (checkpoint of shot {last.shot})" if last else ""
                raise ConfigError(
                    f"{str(partial.path)!r} holds an interrupted run of {config.out!r}{where}: "
                    f"continue it with `llm-surgeon prune --resume {config.out}` or discard it "
                    "with --overwrite"
                )
            partial.remove_if_unlocked()
        partial.create()
        output = cls(config, partial, overwrite=overwrite, keep=keep)
        write_json(partial.path / RUN_CONFIG, config.to_dict())
        output.record(overwrite=overwrite)
        return output

    @classmethod
    def resume(cls, config: RunConfig, *, overwrite: bool = False, keep: str = "all") -> RunOutput:
        """The work folder of the interrupted run of ``config.out``, locked, its checkpoint read.

        Raises:
            ConfigError: there is none, or ``config`` differs from its config (the keys named).
        """
        differences = config_differences(stored_config(config.out), config.to_dict())
        if differences:
            raise ConfigError("the run to resume had another configuration: " + "; ".join(differences))
        partial = PartialFolder(config.out)
        partial.lock()
        try:
            info = json.loads((partial.path / RUN_INFO).read_text(encoding="utf-8"))
        except FileNotFoundError:  # killed right after the work folder was made
            info = {}
        output = cls(config, partial, overwrite=overwrite or bool(info.get("overwrite")), keep=keep)
        output.info = info
        if not partial.saved:
            partial.discard_output()
        remove_incomplete(output.checkpoints)
        output.checkpoint = latest_checkpoint(output.checkpoints)
        if output.checkpoint is None:
            log.info("resuming %s: no shot was checkpointed; starting from shot 1", config.out)
        else:
            log.info("resuming %s after shot %d of %d", config.out, output.checkpoint.shot, config.shots)
        output.record(resumed_after=[*info.get("resumed_after", []),
                                     output.checkpoint.shot if output.checkpoint else 0])
        return output

    def record(self, **values: Any) -> None:
        """Add ``values`` to ``run.json``."""
        self.info.update(values)
        write_json(self.partial.path / RUN_INFO, self.info)

    def check_inputs(self, calibration: Tensor) -> None:
        """Record the calibration hash and model files; on resume, refuse if they changed.

        Raises:
            ConfigError: the calibration windows or the model files are not those of the
                run being resumed.
        """
        sha, files = calibration_sha256(calibration), model_identity(self.config.model)
        if "calibration_sha256" in self.info and self.info["calibration_sha256"] != sha:
            raise ConfigError("the calibration windows differ from those of the run being resumed "
                              "(the calibration data or the tokenizer changed)")
        if "model_files" in self.info and self.info["model_files"] != files:
            raise ConfigError(f"the files of model {self.config.model!r} changed since the run "
                              "being resumed started")
        self.record(calibration_sha256=sha, model_files=files)

    def conversations(self) -> list[dict[str, Any]] | None:
        """The calibration conversations stored by this run before an interruption, if any."""
        path = self.partial.path / CONVERSATIONS
        return read_jsonl(path) if path.is_file() else None

    def store_conversations(self, records: list[dict[str, Any]]) -> None:
        """Keep the calibration conversations in the work folder (for a resume)."""
        write_jsonl(self.partial.path / CONVERSATIONS, records)

    def hook(self, logs: list) -> CheckpointHook | None:
        """The shot hook writing checkpoints (``None`` with ``keep="off"``)."""
        if self.keep == "off":
            return None
        return CheckpointHook(self.checkpoints, self.config.to_dict(), keep=self.keep, logs=logs)

    def start_output(self) -> Path:
        """The empty folder the finished output is written into."""
        return self.partial.start_output()

    def commit(self) -> None:
        """Rename the finished output to ``out`` and remove the work folder."""
        self.partial.commit(overwrite=self.overwrite)

    def failed(self) -> str | None:
        """After an error or interrupt: remove a half-written output; keep checkpoints, if any.

        Returns:
            What was kept and how to go on, or ``None`` if nothing was kept.
        """
        self.partial.discard_output()
        last = latest_checkpoint(self.checkpoints) if self.partial.exists() else None
        if last is None:
            self.partial.remove()
            return None
        self.partial.release()
        return (f"the checkpoint of shot {last.shot} of {self.config.shots} is kept in "
                f"{self.partial.path}: continue with `llm-surgeon prune --resume {self.config.out}` "
                "(or start again with --overwrite)")
