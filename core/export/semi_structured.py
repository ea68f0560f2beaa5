"""2:4 (semi-structured) weights as PyTorch's sparse semi-structured tensors, for CUDA inference.

A Linear whose weight has at most 2 nonzeros in every group of 4 consecutive inputs (the
``2:4`` structure) can run on the sparse tensor cores of Ampere and newer GPUs through
``torch.sparse.to_sparse_semi_structured`` (cuSPARSELt, or CUTLASS where cuSPARSELt is
missing). Inference only: the converted weights take no gradients, and the model cannot be
saved in this form (save the zeroed model; convert after loading).
"""

from __future__ import annotations

import logging

import attrs
import torch
from torch import Tensor, nn

from llm_surgeon.errors import ConfigError
from llm_surgeon.model.adapters import adapter_for

log = logging.getLogger(__name__)

#: Oldest GPU generation with sparse tensor cores (Ampere, compute capability 8.0).
MIN_CAPABILITY = (8, 0)


@attrs.frozen
class SemiStructuredResult:
    """What :func:`semi_structured` converted.

    Attributes:
        backend: ``cusparselt`` or ``cutlass``.
        converted: qualified names of the converted Linears.
        skipped: name -> why it stayed dense (not 2:4, or a shape the kernels do not take).
    """

    backend: str
    converted: tuple[str, ...]
    skipped: dict[str, str]


def is_two_four(weight: Tensor) -> bool:
    """Whether ``weight`` ``(out, in)`` has at most 2 nonzeros in every 4 consecutive inputs."""
    out_features, in_features = weight.shape
    if in_features % 4:
        return False
    return bool(((weight != 0).view(out_features, in_features // 4, 4).sum(dim=2) <= 2).all())


def _backend_class(dtype: torch.dtype) -> type:
    """The sparse tensor class for ``dtype``: cuSPARSELt where available, else CUTLASS."""
    from torch.sparse import SparseSemiStructuredTensorCUSPARSELT as CuSparseLt
    from torch.sparse import SparseSemiStructuredTensorCUTLASS as Cutlass

    use_cusparselt = torch.backends.cusparselt.is_available() and dtype in CuSparseLt._DTYPE_SHAPE_CONSTRAINTS
    return CuSparseLt if use_cusparselt else Cutlass


def check_device(device: torch.device | str, dtype: torch.dtype) -> None:
    """Check that semi-structured kernels run on ``device`` for weights of ``dtype``.

    Raises:
        ConfigError: not a CUDA device, CUDA missing, a GPU older than Ampere, or a dtype
            the kernels do not take.
    """
    device = torch.device(device)
    if device.type != "cuda":
        raise ConfigError(
            f"semi-structured 2:4 kernels run on CUDA GPUs only (compute capability "
            f"{MIN_CAPABILITY[0]}.{MIN_CAPABILITY[1]}, Ampere, or newer); the model is on {device.type}. "
            "On CPU, 2:4 sparsity gives no speedup: use the zeroed model as it is.")
    if not torch.cuda.is_available():
        raise ConfigError(f"device {device} requested but CUDA is not available")
    capability = torch.cuda.get_device_capability(device)
    if capability < MIN_CAPABILITY:
        name = torch.cuda.get_device_name(device)
        raise ConfigError(
            f"semi-structured 2:4 kernels need compute capability {MIN_CAPABILITY[0]}.{MIN_CAPABILITY[1]} "
            f"(Ampere) or newer; {name} has {capability[0]}.{capability[1]}")
    supported = _backend_class(dtype)._DTYPE_SHAPE_CONSTRAINTS
    if dtype not in supported:
        names = ", ".join(str(d).removeprefix("torch.") for d in supported)
        raise ConfigError(f"semi-structured kernels do not take {dtype} weights (supported: {names})")


def _skip_reason(weight: Tensor, backend: type) -> str | None:
    if not is_two_four(weight):
        return "not 2:4"
    constraints = backend._DTYPE_SHAPE_CONSTRAINTS[weight.dtype]
    rows, cols = constraints.sparse_min_rows, constraints.sparse_min_cols
    out_features, in_features = weight.shape
    if out_features % rows or in_features % cols:
        return f"shape {tuple(weight.shape)} is not a multiple of ({rows}, {cols})"
    return None


@torch.no_grad()
def semi_structured(model: nn.Module) -> SemiStructuredResult:
    """Convert every 2:4 prunable Linear of ``model`` (on a CUDA GPU) in place.

    Linears that are not 2:4, or whose shape the kernels do not take, stay dense.

    Raises:
        ConfigError: the model is not on a suitable GPU (see :func:`check_device`) or no
            prunable Linear has a 2:4 weight.
    """
    modules = adapter_for(model).prunable_modules(model)
    weight = modules[0].module.weight
    check_device(weight.device, weight.dtype)
    backend = _backend_class(weight.dtype)
    converted, skipped = [], {}
    for pm in modules:
        reason = _skip_reason(pm.module.weight, backend)
        if reason is not None:
            skipped[pm.name] = reason
            continue
        sparse = backend.from_dense(pm.module.weight.detach().contiguous())
        pm.module.weight = nn.Parameter(sparse, requires_grad=False)
        converted.append(pm.name)
    if not converted:
        raise ConfigError("no prunable Linear has a 2:4 weight (prune with --structure 2:4 first)")
    log.info("semi-structured: %d Linears converted (%s), %d left dense", len(converted),
             backend.BACKEND, len(skipped))
    return SemiStructuredResult(backend.BACKEND, tuple(converted), skipped)
