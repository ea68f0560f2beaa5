"""Optimal Brain Damage baselines (LeCun et al., 1990) on Kronecker curvatures.

``lobd`` uses the diagonal of ``I ⊗ A`` (activations), ``kobd`` the diagonal of
``G ⊗ A`` (classic KFAC), as in the LLM Surgeon paper's baselines. Costs only; the
remaining weights are not updated.
"""

from __future__ import annotations

from llm_surgeon.methods import ThresholdMethod
from llm_surgeon.pruning import UpdateMode


class LOBDMethod(ThresholdMethod):
    """L-OBD: costs from diag(I ⊗ A), no update."""

    default_curvature = "activations"
    diagonal = True
    default_update = UpdateMode.NONE


class KOBDMethod(ThresholdMethod):
    """K-OBD: costs from diag(G ⊗ A), no update."""

    default_curvature = "kfac"
    diagonal = True
    default_update = UpdateMode.NONE
