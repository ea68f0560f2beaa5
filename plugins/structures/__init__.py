"""Built-in structures: ``row-col`` (rows and columns), ``dims`` (neurons and heads), ``element``
and ``n:m`` (e.g. ``2:4``)."""

from __future__ import annotations

from llm_surgeon import hookimpl
from llm_surgeon.plugins.structures.dims import DimsConfig, DimsStructure
from llm_surgeon.plugins.structures.element import ElementConfig, ElementStructure
from llm_surgeon.plugins.structures.nm import NMConfig, NMStructure
from llm_surgeon.plugins.structures.row_col import RowColConfig, RowColStructure


@hookimpl
def register_structures(register):
    register("row-col", RowColStructure, config=RowColConfig,
             description="whole rows (outputs, with their bias) and columns (inputs) of W")
    register("dims", DimsStructure, config=DimsConfig,
             description="real dimensions: MLP neurons and attention heads (with their key/value "
                         "heads), for smaller per-layer widths")
    register("element", ElementStructure, config=ElementConfig,
             description="unstructured: any single weight, with chunked correlated updates")
    register("n:m", NMStructure, config=NMConfig,
             description="semi-structured N:M: n of every m consecutive inputs (--structure 2:4)")
