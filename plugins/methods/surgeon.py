"""The LLM Surgeon (van der Ouderaa et al., ICLR 2024).

Kronecker-factored curvature (``kfac`` by default, or ``nearest-kfac`` with rank
``R_K``), costs of every candidate in every layer (Eq. 8-10 of the paper for rows,
columns and elements under ``F = G ⊗ A``), one global threshold per shot, and the
correlated update ``Δθ = -F⁻¹E_Kᵀ(E_K F⁻¹ E_Kᵀ)⁻¹E_Kθ`` of the remaining weights;
the curvature is re-estimated on the pruned model every shot.
"""

from __future__ import annotations

from llm_surgeon.methods import ThresholdMethod
from llm_surgeon.pruning import UpdateMode


class SurgeonMethod(ThresholdMethod):
    """LLM Surgeon: Kronecker curvature, global threshold, correlated updates."""

    default_curvature = "kfac"
    diagonal = False
    default_update = UpdateMode.FULL
