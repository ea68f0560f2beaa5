"""Fixtures for core tests: a registry of small fake plugins, independent of the built-ins."""

from __future__ import annotations

import copy
import sys
import types
from pathlib import Path

import attrs
import pytest
from chat_templates import TEMPLATE

from llm_surgeon.registry import hookimpl


class FakeMethod:
    """Fake method with a curvature."""

    default_curvature = "fake-kfac"
    structures = None


class ElementOnlyMethod:
    """Fake method that supports only element-wise pruning."""

    default_curvature = "fake-kfac"
    structures = ("element",)


class NoCurvatureMethod:
    """Fake method without a curvature estimator."""

    default_curvature = None
    structures = None


@attrs.frozen
class FakeKfacConfig:
    rank: int = attrs.field(default=1, validator=attrs.validators.ge(1))
    iterations: int = 1
    fisher_type: str = "empirical"


@attrs.frozen
class RowColConfig:
    chunk_size: int = 0


@attrs.frozen
class NMConfig:
    n: int = 2
    m: int = 4


class Fake:
    """Object-style plugin for tests."""

    @hookimpl
    def register_methods(self, register):
        register("fake", FakeMethod)
        register("element-only", ElementOnlyMethod)
        register("no-curvature", NoCurvatureMethod)

    @hookimpl
    def register_curvatures(self, register):
        register("fake-kfac", lambda config: config, config=FakeKfacConfig, description="fake KFAC")
        register("plain", lambda: None, description="no options")

    @hookimpl
    def register_structures(self, register):
        register("element", object, description="elements")
        register("row-col", lambda config: config, config=RowColConfig, description="rows and columns")
        register("n:m", lambda config: config, config=NMConfig, description="N:M")


@pytest.fixture
def fake_registry(monkeypatch):
    """The process-wide registry replaced by built-in adapters plus :class:`Fake` plugins."""
    import llm_surgeon.plugins.architectures as architectures
    from llm_surgeon.registry import registry as registry_module

    reg = registry_module.Registry()
    reg.add_plugin(architectures, "architectures", "llm-surgeon", "0.1.0")
    reg.add_plugin(Fake(), "fake", "fake-dist", "9.9")
    monkeypatch.setattr(registry_module, "_registry", reg)
    return reg


@pytest.fixture
def fake_runner(monkeypatch):
    """A stand-in ``llm_surgeon.run.runner`` recording the configs it is given."""
    calls = []

    def prune(config, *, progress=True, overwrite=False, **kwargs):
        calls.append((config, progress))
        return {"model": config.model, "method": config.method, "curvature": config.curvature,
                "structure": config.structure, "target_size": config.target_size,
                "achieved_size": config.target_size, "ppl_before": 20.0, "ppl_after": 25.5}

    runner = types.ModuleType("llm_surgeon.run.runner")
    runner.prune = prune
    monkeypatch.setitem(sys.modules, "llm_surgeon.run.runner", runner)
    return calls


# -- tiny chat models (chat calibration and fidelity tests) ------------------------

@pytest.fixture(scope="session")
def chat_tokenizer(tiny_tokenizer):
    """The tiny tokenizer with :data:`TEMPLATE` (a copy: the session's tokenizer stays template-free)."""
    tok = copy.deepcopy(tiny_tokenizer)
    tok.chat_template = TEMPLATE
    return tok


@pytest.fixture(scope="session")
def chat_model(make_tiny_model):
    """A tiny random Llama with room for rendered prompts (512 positions)."""
    return make_tiny_model("llama", max_position_embeddings=512)


@pytest.fixture(scope="session")
def chat_model_dir(tmp_path_factory, chat_model, chat_tokenizer) -> Path:
    """:func:`chat_model` and :func:`chat_tokenizer` saved as a Hugging Face folder."""
    folder = tmp_path_factory.mktemp("tiny-chat-llama")
    chat_model.save_pretrained(folder)
    chat_tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def bos_tokenizer(tiny_tokenizer):
    """The tiny BPE tokenizer, but putting ``<bos>`` in front of every text (as Gemma's does)."""
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    backend = copy.deepcopy(tiny_tokenizer.backend_tokenizer)
    backend.add_special_tokens(["<bos>"])
    bos = backend.token_to_id("<bos>")
    backend.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", bos)])
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<bos>", eos_token="<|endoftext|>")
