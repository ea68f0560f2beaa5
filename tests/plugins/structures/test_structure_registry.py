"""The built-in structures are registered with their configs."""

from __future__ import annotations

from llm_surgeon.plugins.structures.element import ElementStructure
from llm_surgeon.plugins.structures.nm import NMStructure
from llm_surgeon.plugins.structures.row_col import RowColStructure
from llm_surgeon.registry import Kind, get_registry


def test_structures_are_registered(fresh_registry):
    registry = get_registry()
    assert {"row-col", "element", "n:m"} <= set(registry.names(Kind.STRUCTURE))
    assert isinstance(registry.get(Kind.STRUCTURE, "row-col").create(), RowColStructure)
    element = registry.get(Kind.STRUCTURE, "element")
    assert isinstance(element.create(element.make_config(chunk_size="row")), ElementStructure)
    nm = registry.get(Kind.STRUCTURE, "n:m")
    structure = nm.create(nm.make_config(n=2, m=4))
    assert isinstance(structure, NMStructure) and (structure.n, structure.m) == (2, 4)
    assert structure.implied_size == 0.5
