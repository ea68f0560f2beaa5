"""Finding, loading and saving causal language models.

A model is named by a *spec*: an alias (``smollm2-135m``), a local Hugging Face
folder, a ``.gguf`` file (dequantised by transformers' GGUF support) or a hub id.
Weights are only read from safetensors or GGUF files: pickled checkpoints
(``pytorch_model.bin``) are refused, since unpickling can run arbitrary code.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from llm_surgeon.errors import ConfigError
from llm_surgeon.model import dequantised
from llm_surgeon.model.aliases import ALIASES, ModelAlias, alias_file
from llm_surgeon.model.files import check_no_pickles, check_weight_files
from llm_surgeon.util.torch_util import torch_dtype

if TYPE_CHECKING:
    from torch import nn
    from transformers import PretrainedConfig, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)


@attrs.frozen
class ModelSource:
    """Where a model's files are.

    Attributes:
        spec: what the user wrote.
        kind: ``folder`` (local Hugging Face folder), ``gguf`` (a GGUF file) or ``hub``.
        path: the folder (``folder``, and ``gguf``: the file's folder) or the hub id.
        gguf_file: the GGUF file name inside ``path`` (``gguf`` only).
    """

    spec: str
    kind: str = attrs.field(validator=attrs.validators.in_(["folder", "gguf", "hub"]))
    path: str
    gguf_file: str | None = None

    def pretrained_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for transformers' ``from_pretrained`` besides the path."""
        return {"gguf_file": self.gguf_file} if self.gguf_file else {}


def _alias_source(spec: str, alias: ModelAlias) -> ModelSource:
    path = alias_file(spec, alias)
    return ModelSource(spec, "gguf", str(path.parent), path.name)


def _looks_like_path(spec: str) -> bool:
    """Hub ids are ``name`` or ``owner/name``; anything else is meant as a local path."""
    return spec.startswith(("/", ".", "~")) or spec.endswith(".gguf") or spec.count("/") > 1


def resolve_model_path(spec: str) -> ModelSource:
    """Find the files of a model.

    Args:
        spec: an alias (see :data:`ALIASES`), a local folder with ``config.json``
            (or with exactly one ``.gguf`` file), a ``.gguf`` file, or a hub id
            such as ``HuggingFaceTB/SmolLM2-135M``.

    Returns:
        The resolved :class:`ModelSource`.

    Raises:
        ConfigError: the alias's package is missing, or a local path does not exist
            or holds no model.
    """
    if spec in ALIASES:
        return _alias_source(spec, ALIASES[spec])
    path = Path(spec).expanduser()
    if path.is_file():
        if path.suffix != ".gguf":
            raise ConfigError(f"model file {spec!r} is not a .gguf file; give a folder or a GGUF file")
        return ModelSource(spec, "gguf", str(path.parent.absolute()), path.name)
    if path.is_dir():
        if (path / "config.json").is_file():
            return ModelSource(spec, "folder", str(path.absolute()))
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            return ModelSource(spec, "gguf", str(path.absolute()), ggufs[0].name)
        what = "several .gguf files (name one)" if ggufs else "no config.json and no .gguf file"
        raise ConfigError(f"model folder {spec!r} has {what}")
    if _looks_like_path(spec):
        known = ", ".join(sorted(ALIASES))
        raise ConfigError(f"model {spec!r} not found (not a file, folder or alias; aliases: {known})")
    return ModelSource(spec, "hub", spec)


def _from_pretrained(loader: Any, source: ModelSource, **kwargs: Any) -> Any:
    """Call ``loader.from_pretrained``; for hub ids fall back to the local cache when offline.

    A GGUF file that cannot be parsed (truncated, corrupt) is one :class:`ConfigError`
    naming the file.
    """
    kwargs.update(source.pretrained_kwargs())
    try:
        return loader.from_pretrained(source.path, **kwargs)
    except (ValueError, IndexError, KeyError, EOFError) as exc:
        if source.kind != "gguf":
            raise
        path = Path(source.path) / str(source.gguf_file)
        raise ConfigError(f"cannot read GGUF file {str(path)!r} (truncated or corrupt?): "
                          f"{type(exc).__name__}: {exc}") from None
    except OSError as exc:
        if source.kind != "hub" or kwargs.get("local_files_only"):
            raise ConfigError(f"cannot load {source.spec!r}: {exc}") from exc
        logger.info("hub not reachable for %s (%s); trying the local cache", source.spec, exc)
        try:
            return loader.from_pretrained(source.path, local_files_only=True, **kwargs)
        except OSError as exc2:
            raise ConfigError(
                f"cannot load {source.spec!r} from the hub or the local cache: {exc2}"
            ) from exc2


#: (source, file identity, trust_remote_code) -> config; GGUF metadata takes seconds to parse.
_CONFIG_CACHE: dict[tuple, PretrainedConfig] = {}


def _file_identity(source: ModelSource) -> tuple | None:
    """``(size, mtime)`` of the file that holds a local model's config, ``None`` for the hub."""
    if source.kind == "hub":
        return None
    path = Path(source.path) / (source.gguf_file or "config.json")
    stat = path.stat()
    return (stat.st_size, stat.st_mtime_ns)


def load_model_config(spec: str, trust_remote_code: bool = False, *, check_files: bool = True) -> PretrainedConfig:
    """The model's configuration, without reading any weights (used for validation).

    For GGUF files the configuration comes from the file's metadata. Results for local
    files are cached while the file is unchanged; a fresh copy is returned each time.
    ``check_files`` also checks a folder's weight files (their headers).
    """
    import copy

    from transformers import AutoConfig

    source = resolve_model_path(spec)
    if source.kind == "folder" and check_files:
        check_weight_files(Path(source.path))
    source = _dequantised_source(source)  # its config.json parses faster than GGUF metadata
    identity = _file_identity(source)
    key = (source, identity, trust_remote_code)
    if identity is None or key not in _CONFIG_CACHE:
        config = _from_pretrained(AutoConfig, source, trust_remote_code=trust_remote_code)
        if identity is None:
            return config
        _CONFIG_CACHE[key] = config
    return copy.deepcopy(_CONFIG_CACHE[key])


#: (source, file identity) -> whether the tokenizer has a chat template.
_TEMPLATE_CACHE: dict[tuple, bool] = {}


def _folder_has_template(folder: Path) -> bool:
    if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
        return True
    try:
        config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(config.get("chat_template"))


def _gguf_has_template(path: Path) -> bool:
    import gguf

    return "tokenizer.chat_template" in gguf.GGUFReader(path).fields


def has_chat_template(spec: str) -> bool | None:
    """Whether the model's tokenizer has a chat template, read without loading weights.

    From ``tokenizer_config.json`` / ``chat_template.jinja`` of a folder, or the GGUF
    metadata (or the dequantised copy of a GGUF file, faster to read); ``None`` for a hub
    model (known only once its tokenizer is loaded).
    """
    source = _dequantised_source(resolve_model_path(spec))
    if source.kind == "hub":
        return None
    key = (source, _file_identity(source))
    if key not in _TEMPLATE_CACHE:
        folder = Path(source.path)
        _TEMPLATE_CACHE[key] = (_gguf_has_template(folder / source.gguf_file) if source.gguf_file
                                else _folder_has_template(folder))
    return _TEMPLATE_CACHE[key]


def context_length(config: PretrainedConfig) -> int | None:
    """The longest sequence the model was built for, if its config says."""
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def strip_quantization(model: nn.Module) -> None:
    """Make a GGUF-loaded (already dequantised) model look like a plain float model."""
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer = None
    for attr in ("is_quantized", "quantization_method"):
        if attr in vars(model):
            delattr(model, attr)
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    for key in ("gguf_file", "_gguf_file"):
        if key in vars(config):
            delattr(config, key)


def load_tokenizer(spec: str, *, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    """The tokenizer of a model (no weights are read; for GGUF its metadata is parsed)."""
    from transformers import AutoTokenizer

    source = _dequantised_source(resolve_model_path(spec))
    return _from_pretrained(AutoTokenizer, source, trust_remote_code=trust_remote_code)


def load_weights(spec: str, *, dtype: str = "float32", device: str = "cpu",
                 trust_remote_code: bool = False) -> nn.Module:
    """Load a causal LM, in eval mode on ``device`` (see :func:`load_model`)."""
    from transformers import AutoModelForCausalLM

    source = resolve_model_path(spec)
    if source.kind == "folder":
        check_no_pickles(Path(source.path))
        check_weight_files(Path(source.path))
    load_from = _dequantised_source(source)
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code, "dtype": torch_dtype(dtype)}
    if load_from.kind != "gguf":
        kwargs["use_safetensors"] = True
    logger.info("loading model %s (%s)", spec, "dequantised cache" if load_from is not source else source.kind)
    model = _from_pretrained(AutoModelForCausalLM, load_from, **kwargs)
    if load_from.kind == "gguf":
        strip_quantization(model)
        if dtype == "float32":
            from transformers import AutoTokenizer

            tokenizer = _from_pretrained(AutoTokenizer, load_from, trust_remote_code=trust_remote_code)
            dequantised.store(_gguf_path(source), model, tokenizer)
    model.to(device)
    model.eval()
    return model


def load_model(
    spec: str,
    *,
    dtype: str = "float32",
    device: str = "cpu",
    trust_remote_code: bool = False,
) -> tuple[nn.Module, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer, in eval mode.

    Args:
        spec: see :func:`resolve_model_path`.
        dtype: weight dtype (GGUF weights are dequantised to it).
        device: where to put the model.
        trust_remote_code: allow model code from the checkpoint (off by default).

    Returns:
        ``(model, tokenizer)``.

    Raises:
        ConfigError: the model is not found, has pickled weights only, or a weight file
            is truncated or corrupt (named).
    """
    model = load_weights(spec, dtype=dtype, device=device, trust_remote_code=trust_remote_code)
    return model, load_tokenizer(spec, trust_remote_code=trust_remote_code)


def _gguf_path(source: ModelSource) -> Path:
    return Path(source.path) / str(source.gguf_file)


def _dequantised_source(source: ModelSource) -> ModelSource:
    """For a GGUF file with a dequantised copy in the cache, that folder; else ``source``."""
    if source.kind != "gguf":
        return source
    folder = dequantised.lookup(_gguf_path(source))
    return source if folder is None else ModelSource(source.spec, "folder", str(folder))


def save_model(model: nn.Module, tokenizer: PreTrainedTokenizerBase | None, folder: str | Path) -> None:
    """Save a standard Hugging Face folder: ``config.json``, safetensors weights, tokenizer.

    The folder loads with ``AutoModelForCausalLM.from_pretrained(folder)`` without
    llm-surgeon. Quantization metadata of GGUF-loaded models is dropped (their
    weights are already dequantised); tied embeddings stay tied.

    Args:
        model: a transformers causal LM.
        tokenizer: its tokenizer (``None`` saves the model only).
        folder: destination folder (created if needed).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    strip_quantization(model)
    model.save_pretrained(folder)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
