"""Exports of pruned models: physically smaller (compact) folders and 2:4 sparse kernels.

* :func:`compact_model` plans the compact model of a structured-pruned one: the MLP units,
  heads, rows and columns that can go without changing a logit; :func:`build_compact` builds
  it; :func:`save_compact` / :func:`export_folder` write it as a Hugging Face folder;
  :func:`load` loads compact and plain folders (no remote code).
* :func:`semi_structured` converts 2:4 Linear weights for CUDA inference.

The per-architecture part is :mod:`llm_surgeon.export.families`; the classes of compact
folders are in :mod:`llm_surgeon.export.modeling` (standalone, copied into the folders).
"""

from llm_surgeon.export.compact import build_compact, compact_model
from llm_surgeon.export.families import FAMILIES, check_supported
from llm_surgeon.export.folders import (
    PLAN_FILE,
    check_export,
    export_folder,
    load,
    register_auto_classes,
    save_compact,
)
from llm_surgeon.export.plan import CompactPlan, LayerPlan, LinearPlan
from llm_surgeon.export.semi_structured import SemiStructuredResult, is_two_four, semi_structured

__all__ = [
    "FAMILIES",
    "PLAN_FILE",
    "CompactPlan",
    "LayerPlan",
    "LinearPlan",
    "SemiStructuredResult",
    "build_compact",
    "check_export",
    "check_supported",
    "compact_model",
    "export_folder",
    "is_two_four",
    "load",
    "register_auto_classes",
    "save_compact",
    "semi_structured",
]
