"""Built-in architecture adapters: the Llama family (Llama, Mistral, Qwen2), OPT, Gemma 3,
GPT-2 and Phi-3."""

from __future__ import annotations

from llm_surgeon import hookimpl
from llm_surgeon.plugins.architectures.gemma import Gemma3Adapter, Gemma3MultimodalAdapter
from llm_surgeon.plugins.architectures.gpt2 import GPT2Adapter
from llm_surgeon.plugins.architectures.llama import LlamaAdapter
from llm_surgeon.plugins.architectures.opt import OPTAdapter
from llm_surgeon.plugins.architectures.phi3 import Phi3Adapter


@hookimpl
def register_architectures(register):
    for model_type in LlamaAdapter.model_types:
        register(model_type, LlamaAdapter, description=f"{model_type}: Llama-family decoder")
    register("opt", OPTAdapter, description="opt: Meta OPT decoder")
    register("gemma3_text", Gemma3Adapter, description="gemma3_text: Google Gemma 3 text decoder")
    register("gemma3", Gemma3MultimodalAdapter,
             description="gemma3: the text decoder of multimodal Gemma 3 (vision tower not pruned)")
    register("gpt2", GPT2Adapter, description="gpt2: OpenAI GPT-2 (Conv1D, fused c_attn)")
    register("phi3", Phi3Adapter, description="phi3: Microsoft Phi-3 (fused qkv_proj, gate_up_proj)")
