"""Built-in pruning methods: the LLM Surgeon."""

from __future__ import annotations

from llm_surgeon.plugins.methods.surgeon import SurgeonMethod
from llm_surgeon.registry import hookimpl


@hookimpl
def register_methods(register):
    register("surgeon", SurgeonMethod,
             description="LLM Surgeon: Kronecker-factored curvature, global threshold, correlated updates")
