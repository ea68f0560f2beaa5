"""Checking a run configuration before any weights are loaded.

:func:`validate_run` resolves the plugin names of a :class:`~llm_surgeon.run.config.RunConfig`
against the registry, builds each plugin's validated config from the user's options,
and checks everything that can be checked cheaply: N:M structures, structures the
method supports, the schedule, dtype and device, data paths, the output folder, and
sequence lengths against the model's context (read from its config only), and that a
compact save has a structured result of a supported architecture. The
output folder is checked by the caller (it depends on ``overwrite``, not on the run). Every
problem is raised as one :class:`~llm_surgeon.errors.ConfigError` (CLI exit code 2).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from llm_surgeon.data.config import CalibrationConfig, DataConfig
from llm_surgeon.errors import ConfigError
from llm_surgeon.pruning.nm import structure_request
from llm_surgeon.run.config import RunConfig

if TYPE_CHECKING:
    from transformers import PretrainedConfig

    from llm_surgeon.registry.registry import PluginRecord, Registry

logger = logging.getLogger(__name__)

@attrs.frozen
class ResolvedRun:
    """A run's plugins, resolved and configured.

    Attributes:
        config: the run configuration that was checked.
        method, method_config: the method's record and its built config (or ``None``).
        curvature, curvature_config: the curvature estimator's record and config;
            both ``None`` when the method needs no curvature.
        structure, structure_config: the structure handler's record and config.
        model_config: the model's transformers config (``None`` if not checked).
    """

    config: RunConfig
    method: PluginRecord
    method_config: Any
    curvature: PluginRecord | None
    curvature_config: Any
    structure: PluginRecord
    structure_config: Any
    model_config: PretrainedConfig | None = attrs.field(default=None, eq=False, repr=False)

    def create_method(self) -> Any:
        """A fresh method instance."""
        return self.method.create(self.method_config)

    def create_curvature(self) -> Any:
        """A fresh curvature estimator, or ``None``."""
        return None if self.curvature is None else self.curvature.create(self.curvature_config)

    def create_structure(self) -> Any:
        """A fresh structure handler."""
        return self.structure.create(self.structure_config)


def method_attribute(record: PluginRecord, config: Any, name: str, default: Any = None) -> Any:
    """A class attribute of a registered method (``structures``, ``default_curvature``...).

    Read from the factory when it is a class; otherwise from a throw-away instance.
    """
    factory = record.factory
    if isinstance(factory, type):
        return getattr(factory, name, default)
    return getattr(record.create(config), name, default)


def _check_method_structure(method: PluginRecord, supported: Any, structure: str, given: str) -> None:
    if supported is None:
        return
    supported = tuple(supported)
    if structure in supported or given in supported:
        return
    raise ConfigError(
        f"method {method.name!r} does not support structure {given!r} "
        f"(supported: {', '.join(supported)})"
    )


def _with_curvature_device(record: PluginRecord, options: Any, device: str | None) -> Any:
    """The estimator's options with the run's ``curvature_device`` where it sets none."""
    if device is None:
        return options
    if options is None or "device" not in attrs.fields_dict(type(options)):
        logger.warning("curvature %r has no device option; curvature_device=%s does not apply",
                       record.name, device)
        return options
    return options if options.device is not None else attrs.evolve(options, device=device)


def check_data(data: DataConfig, what: str) -> None:
    """Check a dataset name, split name and local path, and that its file is not empty
    (no file is read)."""
    from llm_surgeon.data.domains import DOMAINS, check_available
    from llm_surgeon.data.mixture import CHAT
    from llm_surgeon.data.text import check_source, dataset_name, split_name

    if data.dataset == CHAT or ":" in data.dataset or "," in data.dataset:
        raise ConfigError(f"{what} data must be one text dataset, got {data.dataset!r} "
                          "(chat and mixtures are for calibration)")
    dataset = dataset_name(data.dataset)
    split_name(data.split)
    if dataset in DOMAINS:
        check_available(dataset)
    if data.data_dir is not None and not Path(data.data_dir).expanduser().exists():
        raise ConfigError(f"{what} data path {data.data_dir!r} does not exist")
    check_source(data, what)


def check_calibration(cal: CalibrationConfig) -> None:
    """Check the calibration sources, their text dataset and the chat files (parsed here)."""
    from llm_surgeon.data.conversations import load_conversations
    from llm_surgeon.data.mixture import parse_sources, text_dataset, uses_chat, window_counts

    window_counts(parse_sources(cal.data.dataset), cal.nsamples)
    text = text_dataset(cal.data.dataset)
    if text is not None:
        check_data(attrs.evolve(cal.data, dataset=text), "calibration")
    if uses_chat(cal.data.dataset):
        if cal.chat.file is not None:
            load_conversations(cal.chat.file)
        if cal.chat.prompts is not None:
            load_conversations(cal.chat.prompts, prompts=True)


def _check_chat_template(config: RunConfig) -> None:
    from llm_surgeon.data.mixture import uses_chat
    from llm_surgeon.model.loading import has_chat_template

    wanted = [what for what, on in (("chat calibration", uses_chat(config.calibration.data.dataset)),
                                    ("fidelity checks", config.fidelity.enabled)) if on]
    if wanted and has_chat_template(config.model) is False:
        raise ConfigError(
            f"{config.model!r} has no chat template, which {' and '.join(wanted)} need (they render "
            "conversations with the model's own template); use a chat or instruct model, or "
            "calibrate on text (--data wikitext2)"
        )


def check_device(device: str) -> None:
    """Check that ``device`` parses and exists."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as exc:
        raise ConfigError(f"invalid device {device!r}: {exc}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"device {device!r} does not exist ({torch.cuda.device_count()} CUDA devices)")


def _check_couplings(structure: PluginRecord, adapter: PluginRecord, model_type: str) -> None:
    """A structure that removes coupled dimensions needs an adapter that declares them."""
    from llm_surgeon.model.adapters import ArchitectureAdapter

    factory = structure.factory
    if not getattr(factory, "needs_couplings", False):
        return
    cls = adapter.factory
    if isinstance(cls, type) and cls.couplings is ArchitectureAdapter.couplings:
        raise ConfigError(
            f"structure {structure.name!r} needs an architecture adapter that declares couplings "
            f"(MLP neurons, heads); the adapter for model_type {model_type!r} declares none"
        )


def _check_model(config: RunConfig, registry: Registry, structure: PluginRecord) -> PretrainedConfig:
    from llm_surgeon.model.loading import context_length, load_model_config
    from llm_surgeon.registry.registry import Kind

    model_config = load_model_config(config.model, trust_remote_code=config.trust_remote_code)
    model_type = getattr(model_config, "model_type", None)
    adapters = registry.names(Kind.ARCHITECTURE)
    if model_type not in adapters:
        from llm_surgeon.model.adapters import unsupported_message

        raise ConfigError(unsupported_message(model_type, adapters))
    _check_couplings(structure, registry.get(Kind.ARCHITECTURE, model_type), model_type)
    limit = context_length(model_config)
    if limit is not None:
        for what, seqlen in (("calibration", config.calibration.seqlen), ("evaluation", config.evaluation.seqlen)):
            if seqlen > limit:
                raise ConfigError(
                    f"{what} seqlen {seqlen} is longer than the model's context ({limit} tokens)"
                )
    _check_chat_template(config)
    return model_config


def _resolve_curvature(config: RunConfig, registry: Registry, method: PluginRecord,
                       method_config: Any) -> tuple[PluginRecord | None, Any]:
    """The curvature estimator's record and options (``None, None`` if the method needs none)."""
    from llm_surgeon.registry.registry import Kind

    curvature_name = config.curvature or method_attribute(method, method_config, "default_curvature")
    if curvature_name is None:
        if config.curvature_options:
            raise ConfigError(
                f"method {method.name!r} uses no curvature estimator; "
                f"curvature options {sorted(config.curvature_options)} do not apply"
            )
        return None, None
    curvature = registry.get(Kind.CURVATURE, curvature_name)
    curvature_config = curvature.make_config(**config.curvature_options)
    return curvature, _with_curvature_device(curvature, curvature_config, config.curvature_device)


def check_save(config: RunConfig, structure: PluginRecord, structure_config: Any,
               model_config: PretrainedConfig | None) -> None:
    """A compact save (``save`` = ``compact`` / ``both``) needs a structured result and model.

    Raises:
        ConfigError: the structure zeroes single weights or N:M groups, which a compact
            export cannot remove.
        UnsupportedArchitectureError: the architecture has no compact form.
    """
    if config.save == "zeroed" or not config.save_model or not config.out:
        return
    if not method_attribute(structure, structure_config, "structured", False):
        raise ConfigError(
            f"--save {config.save} needs a structure that removes whole rows and columns "
            f"(row-col, dims); {config.structure!r} zeroes single weights, which a compact export "
            "cannot remove: use --save zeroed (for 2:4 on a GPU see `eval --semi-structured`)")
    if model_config is not None:
        from llm_surgeon.export.families import check_supported

        check_supported(model_config)


def validate_run(
    config: RunConfig,
    registry: Registry | None = None,
    *,
    check_model: bool = True,
) -> ResolvedRun:
    """Check a run configuration without loading any weights.

    Args:
        config: the run.
        registry: the plugin registry (default: the process-wide one).
        check_model: also read the model's config (not its weights) to check the
            architecture and the sequence lengths against its context.

    Returns:
        The :class:`ResolvedRun` with every plugin record and built config.

    Raises:
        ConfigError: the first problem found, as one clear message.
    """
    from llm_surgeon.pruning.schedule import get_schedule
    from llm_surgeon.registry.registry import Kind, get_registry
    from llm_surgeon.util.torch_util import torch_dtype

    registry = registry if registry is not None else get_registry()
    method = registry.get(Kind.METHOD, config.method)
    method_config = method.make_config(**config.method_options)

    structure_name, structure_options = structure_request(config.structure, config.structure_options)
    structure = registry.get(Kind.STRUCTURE, structure_name)
    supported = method_attribute(method, method_config, "structures")
    _check_method_structure(method, supported, structure_name, config.structure)
    structure_config = structure.make_config(**structure_options)

    curvature, curvature_config = _resolve_curvature(config, registry, method, method_config)
    get_schedule(config.schedule)
    torch_dtype(config.dtype)
    check_device(config.device)
    if config.curvature_device is not None:
        check_device(config.curvature_device)
    check_calibration(config.calibration)
    if config.evaluation.enabled:
        check_data(config.evaluation.data, "evaluation")
    if config.downstream.tasks:
        from llm_surgeon.data.tasks import check_tasks

        check_tasks(config.downstream)

    model_config = _check_model(config, registry, structure) if check_model else None
    check_save(config, structure, structure_config, model_config)
    return ResolvedRun(
        config=config,
        method=method,
        method_config=method_config,
        curvature=curvature,
        curvature_config=curvature_config,
        structure=structure,
        structure_config=structure_config,
        model_config=model_config,
    )
