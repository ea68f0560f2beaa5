"""Adapter for Gemma 3 (text): the Llama module layout with Gemma's own numerics.

Gemma 3 differs from Llama in ways that need no adapter code, because llm-surgeon
only sees the Linear modules and the decoder layers' inputs and outputs:

* ``q_norm``/``k_norm`` (RMSNorm over each head's ``head_dim`` entries, after
  ``q_proj``/``k_proj``) and a ``head_dim`` that is not ``hidden / heads`` (270M:
  4 heads of 256 on a hidden size of 640, one key/value head): the projections are
  still plain Linears, pruned like any other;
* interleaved sliding-window and global attention layers: layer-wise propagation
  catches every keyword argument of the first decoder layer's call (the masks of
  both kinds and both rotary embeddings) and passes them on;
* the embedding scaled by ``sqrt(hidden)`` inside the embedding module: the
  calibration passes make the embedding module's *output* their gradient leaf, which
  is already scaled;
* the tied ``lm_head`` (``262144 x 640`` for 270M, 63% of the parameters): it is not a
  decoder-layer module, so it is never pruned (pruning it would prune the input
  embedding too); reports give the prunable fraction of the parameters.

The multimodal ``gemma3`` checkpoints keep the same text decoder under
``model.language_model``; only that decoder is pruned (the vision tower is not).
"""

from __future__ import annotations

from torch import nn

from llm_surgeon.plugins.architectures.llama import LlamaAdapter


class Gemma3Adapter(LlamaAdapter):
    """``model.model.layers[i]`` of ``Gemma3ForCausalLM`` (``model_type`` ``gemma3_text``)."""

    model_types = ("gemma3_text",)


class Gemma3MultimodalAdapter(LlamaAdapter):
    """The text decoder ``model.model.language_model.layers[i]`` of ``Gemma3ForConditionalGeneration``."""

    model_types = ("gemma3",)

    def decoder_layers(self, model: nn.Module) -> nn.ModuleList:
        return model.model.language_model.layers
