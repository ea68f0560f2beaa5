"""Built-in baselines: magnitude, L-OBD, K-OBD, SparseGPT and Wanda."""

from __future__ import annotations

from llm_surgeon import hookimpl
from llm_surgeon.plugins.baselines.magnitude import MagnitudeMethod
from llm_surgeon.plugins.baselines.obd import KOBDMethod, LOBDMethod
from llm_surgeon.plugins.baselines.sparsegpt import register_sparsegpt
from llm_surgeon.plugins.baselines.wanda import register_wanda


@hookimpl
def register_methods(register):
    register("magnitude", MagnitudeMethod, description="Magnitude: identity curvature, no update")
    register("lobd", LOBDMethod, description="L-OBD: diagonal of I⊗A (activations), no update")
    register("kobd", KOBDMethod, description="K-OBD: diagonal of G⊗A (KFAC), no update")
    register_sparsegpt(register)
    register_wanda(register)
