"""Pruning methods: the method base, the session, the global-threshold method, the shot loop.

This is the plugin-facing API for methods: subclass :class:`Method` (one shot:
``run_shot(session, shot, target_size)``) or :class:`ThresholdMethod` (curvature, global
threshold, correlated updates), or compose the steps of :mod:`llm_surgeon.methods.steps`.
"""

from llm_surgeon.methods import steps
from llm_surgeon.methods.base import Method, ShotLog
from llm_surgeon.methods.loop import ShotHook, lora_hook, run_shots, shot_targets
from llm_surgeon.methods.lora import LoraSettings, finetune
from llm_surgeon.methods.session import PruningSession, RunSettings
from llm_surgeon.methods.sharding import broadcast_states, scope_owners
from llm_surgeon.methods.threshold import ThresholdMethod
from llm_surgeon.model.state import ModuleState
from llm_surgeon.pruning.structures import UpdateMode

__all__ = [
    "LoraSettings",
    "Method",
    "ModuleState",
    "PruningSession",
    "RunSettings",
    "ShotHook",
    "ShotLog",
    "ThresholdMethod",
    "UpdateMode",
    "broadcast_states",
    "finetune",
    "lora_hook",
    "run_shots",
    "scope_owners",
    "shot_targets",
    "steps",
]
