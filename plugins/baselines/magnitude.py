"""Magnitude pruning: identity curvature (cost θ²/2), no update."""

from __future__ import annotations

from llm_surgeon.structures import UpdateMode
from llm_surgeon.threshold_method import ThresholdMethod


class MagnitudeMethod(ThresholdMethod):
    """Remove the smallest weights (rows/columns of smallest norm), globally."""

    default_curvature = "identity"
    default_update = UpdateMode.NONE
