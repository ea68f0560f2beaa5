"""Per-shot checkpoints: everything a run needs to go on after its last completed shot.

A checkpoint is a folder ``shot-NNN`` in ``.OUT.partial/checkpoints/``:

* ``masks.safetensors``: module name -> its bool mask ``(d_out, d_in)``, bit-packed
  (:func:`numpy.packbits`, row-major: 8 weights a byte);
* ``weights-NNNNN-of-MMMMM.safetensors``: ``NAME.weight`` (and ``NAME.bias``) of every
  prunable module in the model's dtype, in files of about :data:`SHARD_BYTES` (a write
  holds one file's bytes in memory at a time). Every prunable weight is kept, not only
  the changed ones: with correlated updates every module that lost a row or column
  changes, which after the first shot of a row-col run is all of them (README, "Long
  runs");
* ``state.safetensors``: the generators' states, the warm-start curvatures (when the
  estimator uses them) and a method's ``session.extras``;
* ``state.json``: the shot, the resolved config, the shot logs so far, the mask hash,
  and the JSON side of ``state.safetensors``.

It is written as ``.shot-NNN.tmp`` (every file flushed to disk) and renamed, so a folder
named ``shot-NNN`` is always complete; a run killed while writing one leaves only a
``.tmp`` folder, which the next start removes.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor

from llm_surgeon.curvature.types import Curvature
from llm_surgeon.errors import OutputError, SurgeonError
from llm_surgeon.methods.base import ShotLog
from llm_surgeon.methods.session import PruningSession
from llm_surgeon.model.state import mask_sha256
from llm_surgeon.run.config import unstructure
from llm_surgeon.util.faults import fault_point
from llm_surgeon.util.io import apply_umask, fsync_folder, to_plain
from llm_surgeon.util.rng import rng_state, set_rng_state
from llm_surgeon.util.tensor_tree import flatten, unflatten

log = logging.getLogger(__name__)

CHECKPOINT_VERSION = 1
#: Weights are written in files of about this size, which bounds the memory a write takes.
SHARD_BYTES = 512 * 2**20

def _weight_shards(session: PruningSession) -> list[dict[str, Tensor]]:
    """Every prunable module's weight and bias, in files of about :data:`SHARD_BYTES`."""
    shards: list[dict[str, Tensor]] = [{}]
    size = 0
    for s in session.states:
        for kind in ("weight", "bias"):
            param = getattr(s.pm.module, kind)
            if param is None:
                continue
            nbytes = param.numel() * param.element_size()
            if shards[-1] and size + nbytes > SHARD_BYTES:
                shards.append({})
                size = 0
            shards[-1][f"{s.pm.name}.{kind}"] = param.detach().cpu().contiguous()
            size += nbytes
    return shards


def _session_tensors(session: PruningSession) -> tuple[dict[str, dict[str, Tensor]], dict[str, Any]]:
    """The tensors of each file and the JSON side of the session's state."""
    files = {"masks": {s.pm.name: torch.from_numpy(np.packbits(s.mask.cpu().numpy()))
                       for s in session.states}}
    shards = _weight_shards(session)
    for i, shard in enumerate(shards, start=1):
        files[f"weights-{i:05d}-of-{len(shards):05d}"] = shard
    rng_tensors, rng_data = rng_state()
    state = {f"rng/{k}": v for k, v in rng_tensors.items()}
    previous = None
    if session.estimator is not None and session.estimator.uses_previous:
        previous = flatten(session.previous_curvatures, state, "warm")
    extras = flatten(session.extras, state, "extras")
    files["state"] = state
    return files, {"rng": rng_data, "previous_curvatures": previous, "extras": extras}


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


@attrs.frozen
class Checkpoint:
    """A complete checkpoint folder and its ``state.json``."""

    folder: Path
    state: dict[str, Any]

    @property
    def shot(self) -> int:
        return int(self.state["shot"])

    def shot_logs(self) -> list[ShotLog]:
        """The logs of shots ``1..shot``."""
        return [ShotLog(**entry) for entry in self.state["shot_logs"]]

    def restore(self, session: PruningSession) -> list[ShotLog]:
        """Put masks, weights, warm-start state, extras and generators back into ``session``.

        Raises:
            SurgeonError: the checkpoint does not match the session's model.
        """
        masks = load_file(self.folder / "masks.safetensors")
        tensors = load_file(self.folder / "state.safetensors")
        if sorted(masks) != sorted(s.pm.name for s in session.states):
            raise SurgeonError(f"checkpoint {self.folder} is for other modules than this model's")
        for s in session.states:
            s.mask = _unpack(masks[s.pm.name], s.pm.module.weight.shape)
        self._restore_weights(session)
        data = self.state["session"]
        if data["previous_curvatures"] is not None:
            session.previous_curvatures = unflatten(data["previous_curvatures"], tensors, (Curvature,))
        session.extras = unflatten(data["extras"], tensors)
        set_rng_state({k[4:]: v for k, v in tensors.items() if k.startswith("rng/")}, data["rng"])
        return self.shot_logs()


    @torch.no_grad()
    def _restore_weights(self, session: PruningSession) -> None:
        """Copy every prunable weight and bias back, one tensor at a time."""
        params = {f"{s.pm.name}.{kind}": getattr(s.pm.module, kind)
                  for s in session.states for kind in ("weight", "bias")
                  if getattr(s.pm.module, kind) is not None}
        for path in sorted(self.folder.glob("weights-*.safetensors")):
            with safe_open(path, framework="pt") as f:
                for key in f.keys():  # noqa: SIM118 - safe_open has no __iter__
                    t, param = f.get_tensor(key), params.pop(key, None)
                    if param is None or t.shape != param.shape or t.dtype != param.dtype:
                        raise SurgeonError(f"checkpoint {self.folder}: {key} is not a weight of "
                                           "this model, or has another shape or dtype")
                    param.copy_(t)
        if params:
            raise SurgeonError(f"checkpoint {self.folder} lacks {len(params)} weights "
                               f"(e.g. {next(iter(params))})")


def _unpack(packed: Tensor, shape: torch.Size) -> Tensor:
    """A bool mask of ``shape`` from its :func:`numpy.packbits` bytes."""
    bits = np.unpackbits(packed.numpy(), count=shape.numel())
    return torch.from_numpy(bits.astype(bool)).reshape(shape)


def _shot_folders(root: Path) -> list[tuple[int, Path]]:
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        name = path.name
        if name.startswith("shot-") and name[5:].isdigit() and (path / "state.json").is_file():
            found.append((int(name[5:]), path))
    return sorted(found)


def latest_checkpoint(root: Path) -> Checkpoint | None:
    """The last complete checkpoint in ``root``, or ``None``."""
    folders = _shot_folders(root)
    if not folders:
        return None
    folder = folders[-1][1]
    state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
    if state.get("version") != CHECKPOINT_VERSION:
        raise SurgeonError(f"checkpoint {folder} has version {state.get('version')}, "
                           f"this llm-surgeon reads version {CHECKPOINT_VERSION}")
    return Checkpoint(folder, state)


def remove_incomplete(root: Path) -> None:
    """Delete the ``.tmp`` folders of checkpoints whose write was interrupted."""
    if root.is_dir():
        for path in root.glob(".shot-*.tmp"):
            shutil.rmtree(path, ignore_errors=True)


class CheckpointHook:
    """A shot hook that checkpoints every completed shot (add it after the other hooks).

    Args:
        root: the checkpoints folder.
        config: the resolved run config (plain data).
        keep: ``all`` or ``last`` (see :data:`~llm_surgeon.run.config.CHECKPOINT_KEEP`).
        logs: the logs of the shots before the first one this hook sees (a resumed run's).
    """

    def __init__(self, root: Path, config: dict[str, Any], keep: str = "all",
                 logs: Sequence[ShotLog] = ()) -> None:
        self.root = root
        self.config = config
        self.keep = keep
        self.logs = list(logs)

    def __call__(self, session: PruningSession, shot_log: ShotLog) -> None:
        self.logs.append(shot_log)
        start = time.perf_counter()
        tmp = self.root / f".shot-{shot_log.shot:03d}.tmp"
        try:
            self._write(session, shot_log, tmp, start)
        except BaseException as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(exc, OSError):
                raise OutputError(f"could not write the checkpoint of shot {shot_log.shot} "
                                   f"in {self.root}: {exc}") from exc
            raise
        shot_log.info["checkpoint"]["seconds"] = time.perf_counter() - start
        shot_log.seconds["checkpoint"] = shot_log.info["checkpoint"]["seconds"]
        if self.keep == "last":
            for shot, path in _shot_folders(self.root):
                if shot != shot_log.shot:
                    shutil.rmtree(path, ignore_errors=True)

    def _write(self, session: PruningSession, shot_log: ShotLog, tmp: Path, start: float) -> None:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        files, data = _session_tensors(session)
        size = 0
        for name, tensors in files.items():
            path = tmp / f"{name}.safetensors"
            save_file(tensors, path)
            _fsync(path)
            size += path.stat().st_size
        fault_point("checkpoint-write")
        seconds = time.perf_counter() - start  # the final figure, with state.json, is set after
        shot_log.info["checkpoint"] = {"mb": size / 2**20, "seconds": seconds,
                                       "mask_sha256": mask_sha256(session.states)}
        shot_log.seconds["checkpoint"] = seconds
        state = {"version": CHECKPOINT_VERSION, "shot": shot_log.shot, "config": self.config,
                 "shot_logs": to_plain([unstructure(s) for s in self.logs]), "session": data}
        (tmp / "state.json").write_text(json.dumps(state), encoding="utf-8")
        _fsync(tmp / "state.json")
        apply_umask(tmp)
        final = self.root / f"shot-{shot_log.shot:03d}"
        shutil.rmtree(final, ignore_errors=True)  # nothing there unless a shot is checkpointed twice
        os.replace(tmp, final)
        fsync_folder(self.root)
        log.info("checkpoint of shot %d: %.1f MB in %.2f s", shot_log.shot, size / 2**20,
                 time.perf_counter() - start)
