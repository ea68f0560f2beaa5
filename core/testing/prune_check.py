"""Prune a tiny model with registered plugins and check the contract every method keeps."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from llm_surgeon.data.config import CalibrationConfig
from llm_surgeon.methods.base import Method, ShotLog
from llm_surgeon.methods.loop import run_shots
from llm_surgeon.methods.session import PruningSession
from llm_surgeon.model.adapters import adapter_for
from llm_surgeon.model.state import ModuleState
from llm_surgeon.model.tiny import random_tokens
from llm_surgeon.pruning.nm import parse_nm, structure_request
from llm_surgeon.pruning.structures import UpdateMode
from llm_surgeon.registry.registry import Kind, get_registry
from llm_surgeon.run.config import RunConfig


def make_session(model: nn.Module, *, method: str = "surgeon", curvature: str | None = None,
                 structure: str = "row-col", calibration: torch.Tensor | None = None,
                 update: str | None = None, curvature_options: dict | None = None,
                 structure_options: dict | None = None, target_size: float = 0.5,
                 shots: int = 1) -> tuple[Method, PruningSession]:
    """A method and a :class:`PruningSession` over ``model``, from registered plugin names."""
    registry = get_registry()
    method_obj = registry.get(Kind.METHOD, method).create()
    structure_name, structure_options = structure_request(structure, structure_options or {})
    structure_rec = registry.get(Kind.STRUCTURE, structure_name)
    structure_obj = structure_rec.create(structure_rec.make_config(**structure_options))
    curvature = curvature or method_obj.default_curvature
    estimator = None
    if curvature is not None:
        rec = registry.get(Kind.CURVATURE, curvature)
        estimator = rec.create(rec.make_config(**(curvature_options or {})))
    if calibration is None:
        calibration = random_tokens(model)
    adapter = adapter_for(model)
    config = RunConfig(model="<in-memory>", method=method, curvature=curvature, structure=structure,
                       target_size=target_size, shots=shots, update=update,
                       calibration=CalibrationConfig(nsamples=len(calibration), seqlen=calibration.shape[1],
                                                     batch_size=2))
    session = PruningSession(
        model=model, adapter=adapter,
        states=[ModuleState.dense(pm) for pm in adapter.prunable_modules(model)],
        structure=structure_obj, structure_name=structure_name, calibration=calibration,
        config=config, estimator=estimator,
        update=UpdateMode(update) if update else method_obj.default_update, progress=False,
    )
    return method_obj, session


class _ContractCheck:
    """A shot hook asserting the contract every method/curvature/structure must keep."""

    def __init__(self, session: PruningSession) -> None:
        self.previous = [s.mask.clone() for s in session.states]

    def __call__(self, session: PruningSession, shot_log: ShotLog) -> None:
        largest = max(session.structure.max_candidate_weights(scope) for scope in session.scopes)
        slack = largest / session.total_weights()
        size = session.real_size() if session.structure.size_measure == "real" else session.size()
        assert abs(size - shot_log.target) <= slack + 1e-9, (size, shot_log.target)
        for state, before in zip(session.states, self.previous, strict=True):
            w = state.pm.weight.detach().cpu()
            assert torch.all(w[~state.mask] == 0), f"{state.pm.name}: masked weights are not zero"
            assert not torch.any(state.mask & ~before), f"{state.pm.name}: a removed weight came back"
        self.previous = [s.mask.clone() for s in session.states]


def check_prune(model: nn.Module, **kwargs: Any) -> PruningSession:
    """Prune ``model`` and assert the contract every method/curvature/structure must keep.

    Checks: each shot's size (by the structure's ``size_measure``) is within one
    candidate's worth of its target (``Structure.max_candidate_weights``), weights
    outside the masks are exactly zero, the masks only shrink, an ``N:M`` run to size
    ``1 - N/M`` leaves ``M - N`` weights in every group, and the model's outputs stay
    finite. Keyword arguments are those of :func:`make_session`.
    """
    method, session = make_session(model, **kwargs)
    run_shots(method, session, hooks=[_ContractCheck(session)])
    nm = parse_nm(kwargs.get("structure", "row-col"))
    if nm is not None and kwargs.get("target_size") == 1 - nm[0] / nm[1]:
        for state in session.states:  # the final N:M shot leaves M - N weights in each group
            groups = state.mask.reshape(state.mask.shape[0], -1, nm[1])
            assert (groups.sum(-1) == nm[1] - nm[0]).all(), f"{state.pm.name}: not {nm[0]}:{nm[1]}"
    with torch.no_grad():
        logits = model(random_tokens(model, 2, 8, seed=1)).logits
    assert torch.isfinite(logits).all(), "non-finite logits after pruning"
    return session
