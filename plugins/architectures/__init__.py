"""Built-in architecture adapters: the Llama family (Llama, Mistral, Qwen2) and OPT."""

from __future__ import annotations

from llm_surgeon import hookimpl
from llm_surgeon.plugins.architectures.llama import LlamaAdapter
from llm_surgeon.plugins.architectures.opt import OPTAdapter


@hookimpl
def register_architectures(register):
    for model_type in LlamaAdapter.model_types:
        register(model_type, LlamaAdapter, description=f"{model_type}: Llama-family decoder")
    register("opt", OPTAdapter, description="opt: Meta OPT decoder")
