"""Built-in pruning methods: the LLM Surgeon."""

from __future__ import annotations

from llm_surgeon import hookimpl
from llm_surgeon.plugins.methods.surgeon import SurgeonMethod


@hookimpl
def register_methods(register):
    register("surgeon", SurgeonMethod,
             description="LLM Surgeon: Kronecker-factored curvature, global threshold, correlated updates")
