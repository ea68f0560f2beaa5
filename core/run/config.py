"""The configuration of one pruning run: a frozen, validated attrs class.

A recipe file, the CLI and the Python API all produce the same :class:`RunConfig`, and
invalid values fail before any model is loaded (:func:`llm_surgeon.run.validate.validate_run`).
Conversion to and from plain data (``run_config.json``, recipes) is done by cattrs, which
refuses unknown keys and names the path of every bad value.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from typing import Any

import attrs
import cattrs
from attrs import validators as v
from cattrs.v import format_exception

from llm_surgeon.data.config import (
    CalibrationConfig,
    ChatConfig,
    DataConfig,
    EvalConfig,
    FidelityConfig,
    TasksConfig,
)
from llm_surgeon.errors import ConfigError, validation_message
from llm_surgeon.methods.lora.settings import LoraSettings
from llm_surgeon.pruning.nm import check_nm
from llm_surgeon.util.validators import fraction

__all__ = ["CHECKPOINT_KEEP", "SAVE_FORMATS", "CalibrationConfig", "ChatConfig", "DataConfig", "EvalConfig",
           "FidelityConfig", "LoraSettings", "RunConfig", "TasksConfig"]

#: How the pruned model can be saved (``RunConfig.save``).
SAVE_FORMATS = ("zeroed", "compact", "both")

#: What a run with an output folder checkpoints: every shot, only the last shot, nothing.
CHECKPOINT_KEEP = ("all", "last", "off")


@attrs.frozen
class RunConfig:
    """One pruning run.

    Attributes:
        model: a local folder, a GGUF file, a hub id, or an alias (``smollm2-135m``).
        method: registered method name.
        curvature: registered curvature name; ``None`` uses the method's default.
        structure: ``row-col``, ``element``, ``N:M`` (e.g. ``2:4``) or another registered one.
        target_size: fraction of prunable weights kept at the end, in (0, 1].
        shots: number of shots.
        schedule: ``linear`` (target sizes interpolated from dense to final).
        method_options, curvature_options, structure_options: plugin options.
        damping_g, damping_a: relative damping of the output factor ``G`` and of the
            input factor ``A``; ``None`` uses the structure's default (README, "Damping").
        update: ``full`` or ``none`` (``None``: the method's default).
        calibration, evaluation: calibration windows; perplexity evaluation.
        downstream: lm-eval tasks evaluated after pruning (none by default).
        device: ``cpu``, ``cuda``, ``cuda:1``...
        dtype: model dtype during pruning (``float32``, ``bfloat16``...).
        curvature_device: where curvature statistics and factors live (``None``: with the
            model); an estimator's own ``device`` option takes precedence.
        fidelity: agreement with the dense model and question accuracy after pruning.
        out: output folder; ``None`` writes nothing.
        save_model: whether to save the pruned model in ``out``.
        save: how: ``zeroed`` (same shapes, pruned weights zero), ``compact`` (physically
            smaller, structured results only) or ``both`` (zeroed in ``out``, compact in
            ``out/compact``).
        trust_remote_code: passed to transformers when loading.
    """

    model: str
    method: str = "surgeon"
    curvature: str | None = None
    structure: str = "row-col"
    target_size: float = attrs.field(default=0.8, validator=fraction)
    shots: int = attrs.field(default=5, validator=v.ge(1))
    schedule: str = "linear"
    method_options: dict[str, Any] = attrs.field(factory=dict)
    curvature_options: dict[str, Any] = attrs.field(factory=dict)
    structure_options: dict[str, Any] = attrs.field(factory=dict)
    damping_g: float | None = attrs.field(default=None, validator=v.optional(v.ge(0.0)))
    damping_a: float | None = attrs.field(default=None, validator=v.optional(v.ge(0.0)))
    update: str | None = attrs.field(default=None, validator=v.optional(v.in_(["full", "none"])))
    calibration: CalibrationConfig = attrs.field(factory=CalibrationConfig)
    evaluation: EvalConfig = attrs.field(factory=EvalConfig)
    downstream: TasksConfig = attrs.field(factory=TasksConfig)
    lora: LoraSettings = attrs.field(factory=LoraSettings)
    fidelity: FidelityConfig = attrs.field(factory=FidelityConfig)
    device: str = "cpu"
    dtype: str = "float32"
    curvature_device: str | None = None
    out: str | None = None
    save_model: bool = True
    save: str = attrs.field(default="zeroed", validator=v.in_(SAVE_FORMATS))
    trust_remote_code: bool = False
    seed: int = 0

    def __attrs_post_init__(self) -> None:
        check_nm(self.structure)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (for ``run_config.json`` / recipes)."""
        return _CONVERTER.unstructure(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        """Inverse of :meth:`to_dict`; unknown keys and bad values are a :class:`ConfigError`."""
        return structure_config(data, cls)


class WrongType(ValueError):
    """A value of the wrong type in plain configuration data (``shots: "3"``, ``save_model: "no"``)."""


def _exact(kind: str, accepts: Callable[[Any], bool], cast: Callable[[Any], Any]) -> Callable:
    """A structure hook taking only values ``accepts`` admits (cattrs would coerce the rest)."""
    def structure(value: Any, _type: Any) -> Any:
        if not accepts(value):
            raise WrongType(f"expected {kind}, got {type(value).__name__} {value!r}")
        return cast(value)

    return structure


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _strict(converter: cattrs.Converter) -> cattrs.Converter:
    """No silent coercion: ``2.7`` is no int, ``"no"`` no bool, ``"qv"`` no tuple of roles."""
    converter.register_structure_hook(
        int, _exact("an integer", lambda x: _number(x) and isinstance(x, int), int))
    converter.register_structure_hook(float, _exact("a number", _number, float))
    converter.register_structure_hook(bool, _exact("true or false", lambda x: isinstance(x, bool), bool))
    converter.register_structure_hook(str, _exact("a string", lambda x: isinstance(x, str), str))

    def tuples(type_: Any) -> Callable:
        item = typing.get_args(type_)[0] if typing.get_args(type_) else Any

        def structure(value: Any, _type: Any) -> tuple:
            if not isinstance(value, (list, tuple)):
                raise WrongType(f"expected a list, got {type(value).__name__} {value!r}")
            return tuple(converter.structure(x, item) for x in value)

        return structure

    converter.register_structure_hook_factory(lambda t: typing.get_origin(t) is tuple, tuples)
    return converter


_CONVERTER = _strict(cattrs.Converter(forbid_extra_keys=True))


def unstructure(obj: Any) -> Any:
    """Plain data (dicts, lists, enum values) of an attrs object; other values as they are."""
    return _CONVERTER.unstructure(obj)


def _format(exc: BaseException, type_: Any) -> str:
    if isinstance(exc, WrongType):
        return str(exc)
    if type_ is None and isinstance(exc, ValueError):  # an attrs validator or post-init check
        return validation_message(exc)
    return format_exception(exc, type_)


def structure_config(data: Any, cls: type) -> Any:
    """An attrs config of type ``cls`` from plain data.

    Raises:
        ConfigError: naming every unknown key, missing field and bad value with its path
            (e.g. ``lora.rank must be >= 1, got 0 @ $.lora``).
    """
    if not isinstance(data, dict):
        raise ConfigError(f"invalid run configuration: expected a mapping, got {type(data).__name__}")
    try:
        return _CONVERTER.structure(data, cls)
    except ConfigError:
        raise
    except (cattrs.BaseValidationError, TypeError, ValueError) as exc:
        if isinstance(exc, cattrs.BaseValidationError):
            problems = "; ".join(cattrs.transform_error(exc, format_exception=_format))
        else:
            problems = validation_message(exc)
        raise ConfigError(f"invalid run configuration: {problems}") from None
