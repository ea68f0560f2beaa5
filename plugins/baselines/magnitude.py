"""Magnitude pruning: identity curvature (cost θ²/2), no update."""

from __future__ import annotations

from llm_surgeon.methods import ThresholdMethod
from llm_surgeon.pruning import UpdateMode


class MagnitudeMethod(ThresholdMethod):
    """Remove the smallest weights (rows/columns of smallest norm), globally."""

    default_curvature = "identity"
    default_update = UpdateMode.NONE
