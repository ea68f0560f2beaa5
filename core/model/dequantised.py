"""A cache of GGUF models dequantised to float32 Hugging Face folders.

Reading a GGUF file means parsing its metadata and dequantising every tensor; for
Gemma 3 270M (262k-token vocabulary) that is about 70 s with the tokenizer, while the
same weights saved as float32 safetensors reload in about 3 s with identical logits.
The first load of a GGUF file saves such a folder under
``model_cache_folder()/dequantised/``, keyed by the file's path, size and modification
time; later loads read it. The folder is written to a temporary name and renamed when
complete. ``LLM_SURGEON_MODEL_CACHE=off`` switches the cache off.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from llm_surgeon.model.aliases import model_cache_folder

if TYPE_CHECKING:
    from torch import nn
    from transformers import PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

#: Bump when the layout of a cached folder changes.
_VERSION = 1


def cached_folder(gguf: Path) -> Path | None:
    """The cache folder of the GGUF file ``gguf`` (it may not exist yet); ``None`` if off."""
    root = model_cache_folder()
    if root is None:
        return None
    stat = gguf.stat()
    ident = f"{_VERSION}:{gguf.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    digest = hashlib.sha256(ident.encode()).hexdigest()[:16]
    return root / "dequantised" / f"{gguf.stem}-{digest}"


def lookup(gguf: Path) -> Path | None:
    """The complete cached folder of ``gguf``, or ``None``."""
    folder = cached_folder(gguf)
    if folder is not None and (folder / "config.json").is_file():
        return folder
    return None


def store(gguf: Path, model: nn.Module, tokenizer: PreTrainedTokenizerBase) -> None:
    """Save a just-dequantised float32 model and its tokenizer as the cache of ``gguf``.

    Best effort: a failure (disk full, read-only cache) is logged and ignored.
    """
    from llm_surgeon.model.loading import save_model

    folder = cached_folder(gguf)
    if folder is None or folder.exists():
        return
    tmp = None
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.partial-", dir=folder.parent))
        save_model(model, tokenizer, tmp)
        os.replace(tmp, folder)
        logger.info("cached the dequantised model in %s", folder)
    except OSError as exc:
        logger.warning("could not cache the dequantised model in %s: %s", folder, exc)
    finally:
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
