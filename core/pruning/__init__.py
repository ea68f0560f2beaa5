"""Pruning: structures, the global threshold, schedules, layer-wise propagation of
calibration data, dead-structure propagation and the real (compact-export) size.

This is the plugin-facing API for structures: subclass :class:`Structure`, return a
:class:`CandidateSet` per :class:`Scope`, and remove the selection through the shot's
:class:`~llm_surgeon.solver.Solvers` (damped solvers of live sub-matrices).
"""

from llm_surgeon.model.couplings import Coupling, Member
from llm_surgeon.model.state import ModuleState
from llm_surgeon.pruning.compact import real_parameters
from llm_surgeon.pruning.dead import count_dead, remove_dead
from llm_surgeon.pruning.layerwise import (
    InputStatistic,
    LayerInputs,
    capture_layer_inputs,
    layer_groups,
    propagate,
    run_layer,
)
from llm_surgeon.pruning.nm import NM_STRUCTURE, parse_nm, structure_request
from llm_surgeon.pruning.schedule import SCHEDULES, get_schedule, targets
from llm_surgeon.pruning.structures import CandidateSet, Scope, Structure, UpdateMode
from llm_surgeon.pruning.threshold import global_threshold, threshold_after
from llm_surgeon.solver import DEFAULT_CHUNK_SIZE, SWEEPS, ChunkSize, LiveView, Solvers, Sweep

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "NM_STRUCTURE",
    "SCHEDULES",
    "SWEEPS",
    "CandidateSet",
    "ChunkSize",
    "Coupling",
    "InputStatistic",
    "LayerInputs",
    "LiveView",
    "Member",
    "ModuleState",
    "Scope",
    "Solvers",
    "Structure",
    "Sweep",
    "UpdateMode",
    "capture_layer_inputs",
    "count_dead",
    "get_schedule",
    "global_threshold",
    "layer_groups",
    "parse_nm",
    "propagate",
    "real_parameters",
    "remove_dead",
    "run_layer",
    "structure_request",
    "targets",
    "threshold_after",
]
