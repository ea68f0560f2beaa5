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


@pytest.mark.parametrize("family", ["llama", "llama-bias", "mistral", "qwen2", "opt"])
@pytest.mark.parametrize("method", ["magnitude", "lobd", "kobd", "surgeon"])
def test_every_threshold_method_prunes_real_dimensions(family, method):
    session = check_prune(tiny_model(family), method=method, structure="dims", target_size=0.6, shots=2)
    largest = max(session.structure.max_candidate_weights(s) for s in session.scopes)
    assert abs(session.size() - 0.6) <= largest / session.total_weights()
    # Only whole dimensions go: every member slice of a coupling is alive or gone together.
    masks = {s.pm.name: s.mask for s in session.states}
    for c in session.couplings:
        alive = [masks[m.module].any(dim=1 if m.axis == "row" else 0)[m.index(c.size)].any(dim=1)
                 for m in c.members]
        assert all(bool((a == alive[0]).all()) for a in alive), c.name
    assert session.real_size() == pytest.approx(session.size())


@pytest.mark.parametrize("family", ["llama-bias", "opt"])
def test_row_col_can_target_the_real_size(family):
    session = check_prune(tiny_model(family, intermediate=64, hidden=32), method="surgeon", structure="row-col",
                          structure_options={"size": "real"}, target_size=0.6, shots=2)
    assert session.real_size() == pytest.approx(0.6, abs=0.02)
