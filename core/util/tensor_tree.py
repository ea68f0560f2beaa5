"""Nested data with tensors, split into a JSON skeleton and a flat dict of tensors.

Checkpoints keep a method's state between shots (warm-start curvatures, free-form
extras) in safetensors files, which hold flat name -> tensor maps only. :func:`flatten`
turns dicts, lists, tuples, scalars, tensors and attrs instances into a JSON-able
skeleton whose tensors are replaced by ``{"tensor": key}`` references, and
:func:`unflatten` rebuilds the original. Only attrs classes the caller allows are
rebuilt, and only from modules already imported: a checkpoint never imports code.
"""

from __future__ import annotations

import sys
from typing import Any

import attrs
from torch import Tensor


def flatten(obj: Any, tensors: dict[str, Tensor], path: str = "") -> Any:
    """The skeleton of ``obj``; its tensors are added to ``tensors`` under their path.

    Raises:
        TypeError: ``obj`` holds a value of another type (named by its path).
    """
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, Tensor):
        tensors[path] = obj.detach().to("cpu", copy=True).contiguous()  # owns its memory
        return {"tensor": path}
    if isinstance(obj, dict):
        if not all(isinstance(k, str) for k in obj):
            raise TypeError(f"{path or 'value'}: only string keys can be saved")
        return {"dict": {k: flatten(v, tensors, f"{path}/{k}") for k, v in obj.items()}}
    if isinstance(obj, (list, tuple)):
        items = [flatten(v, tensors, f"{path}/{i}") for i, v in enumerate(obj)]
        return {"tuple" if isinstance(obj, tuple) else "list": items}
    if attrs.has(type(obj)):
        cls = type(obj)
        fields = {f.name: flatten(getattr(obj, f.name), tensors, f"{path}/{f.name}")
                  for f in attrs.fields(cls) if f.init}
        return {"attrs": f"{cls.__module__}:{cls.__qualname__}", "fields": fields}
    raise TypeError(f"{path or 'value'}: cannot save a {type(obj).__name__}")


def _class(name: str, allowed: tuple[type, ...]) -> type:
    module_name, _, qualname = name.partition(":")
    obj: Any = sys.modules.get(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    if not (isinstance(obj, type) and issubclass(obj, allowed) and attrs.has(obj)):
        raise ValueError(f"class {name} is not an allowed, loaded attrs class")
    return obj


def unflatten(skeleton: Any, tensors: dict[str, Tensor], allowed: tuple[type, ...] = ()) -> Any:
    """Inverse of :func:`flatten`; attrs instances only of subclasses of ``allowed``.

    Raises:
        ValueError: the skeleton names a tensor that is missing or a class not allowed.
    """
    if not isinstance(skeleton, dict):
        return skeleton
    if "tensor" in skeleton:
        try:
            return tensors[skeleton["tensor"]]
        except KeyError:
            raise ValueError(f"tensor {skeleton['tensor']!r} is missing") from None
    if "dict" in skeleton:
        return {k: unflatten(v, tensors, allowed) for k, v in skeleton["dict"].items()}
    if "list" in skeleton:
        return [unflatten(v, tensors, allowed) for v in skeleton["list"]]
    if "tuple" in skeleton:
        return tuple(unflatten(v, tensors, allowed) for v in skeleton["tuple"])
    cls = _class(skeleton["attrs"], allowed)
    return cls(**{k: unflatten(v, tensors, allowed) for k, v in skeleton["fields"].items()})
