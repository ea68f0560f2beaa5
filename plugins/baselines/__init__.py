"""Built-in baselines: magnitude, L-OBD, K-OBD, SparseGPT and Wanda."""

from __future__ import annotations

from llm_surgeon.hookspecs import hookimpl
from llm_surgeon.plugins.baselines.magnitude import MagnitudeMethod
from llm_surgeon.plugins.baselines.obd import KOBDMethod, LOBDMethod


@hookimpl
def register_methods(register):
    register("magnitude", MagnitudeMethod, description="Magnitude: identity curvature, no update")
    register("lobd", LOBDMethod, description="L-OBD: diagonal of I⊗A (activations), no update")
    register("kobd", KOBDMethod, description="K-OBD: diagonal of G⊗A (KFAC), no update")
