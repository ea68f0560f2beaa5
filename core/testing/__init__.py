"""Helpers for testing llm-surgeon and third-party plugins on tiny random models.

Plugin authors can run the same contract checks the built-ins pass::

    from llm_surgeon.testing import check_adapter, check_prune, tiny_model

    model = tiny_model("llama")
    check_prune(model, method="surgeon", curvature="my-curvature", structure="row-col",
                target_size=0.7, shots=2)
    check_adapter(MyConfig(...))        # an architecture adapter's whole contract
"""

from __future__ import annotations

from llm_surgeon.model.tiny import TINY_FAMILIES, random_tokens, tiny_config, tiny_model
from llm_surgeon.testing.adapter_contract import ContractReport, check_adapter
from llm_surgeon.testing.prune_check import check_prune, make_session

__all__ = ["TINY_FAMILIES", "ContractReport", "check_adapter", "check_prune", "make_session",
           "random_tokens", "tiny_config", "tiny_model"]
