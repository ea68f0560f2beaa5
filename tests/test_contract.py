"""Every registered curvature × structure prunes tiny models of every family to target.

This suite runs over the registry, so a new plugin is tested automatically.
"""

from __future__ import annotations

import pytest

from llm_surgeon.registry import Kind, get_registry
from llm_surgeon.testing import check_prune, tiny_model

_REGISTRY = get_registry()
CURVATURES = [n for n in _REGISTRY.names(Kind.CURVATURE) if _REGISTRY.get(Kind.CURVATURE, n).distribution == "llm-surgeon"]
STRUCTURES = ["row-col", "element", "2:4"]


@pytest.mark.parametrize("structure", STRUCTURES)
@pytest.mark.parametrize("curvature", CURVATURES)
def test_surgeon_with_every_curvature(curvature, structure):
    target = 0.7 if structure == "row-col" else 0.5
    session = check_prune(tiny_model("llama-bias"), method="surgeon", curvature=curvature,
                          structure=structure, target_size=target, shots=2)
    assert session.size() == pytest.approx(target, abs=0.01)


@pytest.mark.parametrize("family", ["llama", "llama-bias", "mistral", "qwen2", "opt"])
@pytest.mark.parametrize("method", ["magnitude", "lobd", "kobd", "surgeon"])
@pytest.mark.parametrize("structure", STRUCTURES)
def test_methods_hit_targets_on_every_family(family, method, structure):
    target = 0.8 if structure == "row-col" else 0.5
    session = check_prune(tiny_model(family), method=method, structure=structure,
                          target_size=target, shots=2)
    assert session.size() == pytest.approx(target, abs=0.02)
    if structure == "2:4":
        for state in session.states:
            groups = state.mask.reshape(state.mask.shape[0], -1, 4)
            assert (groups.sum(-1) == 2).all(), state.pm.name
