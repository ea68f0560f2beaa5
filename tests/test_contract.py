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

# Every method x structure on every family is part of the adapter contract
# (tests/plugins/architectures/test_adapter_contract.py, llm_surgeon.testing.check_adapter).
