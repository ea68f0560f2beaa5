"""GPU check of 2:4 semi-structured inference (run by ``bench/device_check.sh``).

``python -m bench.gpu_semi_structured OUT_JSON [--dry-run]``. Needs only torch, transformers,
attrs, pluggy and tqdm (llm-surgeon need not be installed: the script finds ``core/`` and
``plugins/`` through a shim on ``sys.path`` set up by ``device_check.sh``). It measures:

* kernels: for SmolLM2-135M's Linear shapes and one Llama-7B MLP shape, random weights with a
  2:4 mask, ``F.linear`` with the dense weight against the semi-structured one (the backend
  ``llm_surgeon.export.semi_structured`` picks): max relative error and the median time
  (CUDA events, 20 repeats after warm-up) for 1, 16, 512 and 4096 tokens, float16 and bfloat16;
* a model: a random Llama with SmolLM2-135M's shapes, 2:4-masked by magnitude, converted by
  ``llm_surgeon.export.semi_structured``: max |Δlogit| against the dense masked model, prefill
  of one 512-token window and greedy decode tokens/s over 64 tokens, dense and sparse.

``--dry-run`` writes the plan only (no CUDA needed). Without a suitable GPU the JSON has
``status: "error"`` and the message of the library's check, and the exit status is 2.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

import torch

#: ``(out_features, in_features)`` of SmolLM2-135M's q/o, k/v, gate/up, down; a Llama-7B MLP.
SHAPES = [(576, 576), (192, 576), (1536, 576), (576, 1536), (11008, 4096)]
TOKENS = [1, 16, 512, 4096]
DTYPES = ["float16", "bfloat16"]
SMOLLM2 = dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
               num_key_value_heads=3, head_dim=64, vocab_size=49152, tie_word_embeddings=True)


def plan() -> dict[str, Any]:
    return {"matmuls": [{"shape": list(s), "tokens": TOKENS} for s in SHAPES], "dtypes": DTYPES,
            "model": SMOLLM2, "prefill_tokens": 512, "decode_tokens": 64}


def two_four(weight: torch.Tensor) -> torch.Tensor:
    """``weight`` with the 2 smallest-magnitude entries of every 4 consecutive inputs zeroed."""
    groups = weight.reshape(weight.shape[0], -1, 4)
    keep = groups.abs().topk(2, dim=-1).indices
    mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, keep, True)
    return (groups * mask).reshape(weight.shape)


def _median_ms(fn, repeats: int = 20) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def kernels() -> list[dict[str, Any]]:
    from llm_surgeon.export.semi_structured import _backend_class

    rows = []
    for dtype_name in DTYPES:
        dtype = getattr(torch, dtype_name)
        backend = _backend_class(dtype)
        for out_f, in_f in SHAPES:
            w = two_four(torch.randn(out_f, in_f, device="cuda", dtype=dtype))
            sparse = backend.from_dense(w)
            for n in TOKENS:
                x = torch.randn(n, in_f, device="cuda", dtype=dtype)
                ref = torch.nn.functional.linear(x, w)
                got = torch.nn.functional.linear(x, sparse)
                err = ((got - ref).abs().max() / ref.abs().max()).item()
                dense_ms = _median_ms(lambda x=x, w=w: torch.nn.functional.linear(x, w))
                sparse_ms = _median_ms(lambda x=x, s=sparse: torch.nn.functional.linear(x, s))
                rows.append({"dtype": dtype_name, "backend": backend.BACKEND, "shape": [out_f, in_f],
                             "tokens": n, "max_rel_err": err, "dense_ms": dense_ms,
                             "sparse_ms": sparse_ms, "speedup": dense_ms / sparse_ms})
    return rows


def _time_model(model, ids: torch.Tensor) -> dict[str, float]:
    """Prefill of one 512-token window and greedy decode tokens/s (bench.deploy_worker's timers)."""
    from bench.deploy_worker import decode_rates, prefill_seconds

    sync = torch.cuda.synchronize
    prefill = prefill_seconds(model, ids, repeats=10, sync=sync)
    decode = decode_rates(model, ids, tokens=64, repeats=3, sync=sync)
    return {"prefill_ms": statistics.median(prefill) * 1e3, "decode_tokens_per_s": statistics.median(decode)}


def model_check(dtype_name: str) -> dict[str, Any]:
    from transformers import LlamaConfig, LlamaForCausalLM

    from llm_surgeon.export import semi_structured

    torch.manual_seed(0)
    dtype = getattr(torch, dtype_name)
    model = LlamaForCausalLM(LlamaConfig(**SMOLLM2)).to("cuda", dtype).eval()
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Linear) and ".layers." in name:
                module.weight.copy_(two_four(module.weight))
    ids = torch.randint(0, SMOLLM2["vocab_size"], (1, 512), device="cuda")
    with torch.no_grad():
        ref = model(ids).logits.float()
    dense = _time_model(model, ids)
    result = semi_structured(model)
    with torch.no_grad():
        got = model(ids).logits.float()
    sparse = _time_model(model, ids)
    return {"dtype": dtype_name, "backend": result.backend, "converted": len(result.converted),
            "dense_left": len(result.skipped), "max_abs_dlogit": (got - ref).abs().max().item(),
            "logit_scale": ref.abs().max().item(), "dense": dense, "sparse": sparse}


def _use_builtin_plugins() -> None:
    """Register the built-in architecture adapters when llm-surgeon is not installed."""
    from llm_surgeon.plugins import architectures
    from llm_surgeon.registry import registry as registry_module

    reg = registry_module.Registry()
    reg.add_plugin(architectures, "architectures", "llm-surgeon", "source tree")
    registry_module._registry = reg


def main(argv: list[str]) -> int:
    out = Path(argv[0])
    result: dict[str, Any] = {"check": "semi_structured", "dry_run": "--dry-run" in argv,
                              "plan": plan(), "torch": torch.__version__}
    import llm_surgeon
    from llm_surgeon.errors import ConfigError
    from llm_surgeon.export.semi_structured import check_device

    _use_builtin_plugins()
    result["llm_surgeon"] = str(Path(llm_surgeon.__file__).resolve())
    if result["dry_run"]:  # the imports and the plugin registry resolve; nothing runs
        result["status"] = "ok"
        out.write_text(json.dumps(result, indent=1))
        return 0
    try:
        check_device("cuda", torch.float16)
    except ConfigError as exc:
        result |= {"status": "error", "error": str(exc)}
        out.write_text(json.dumps(result, indent=1))
        print(f"semi_structured: {exc}", file=sys.stderr)
        return 2
    result["gpu"] = torch.cuda.get_device_name()
    result["kernels"] = kernels()
    result["model"] = [model_check(d) for d in DTYPES]
    result["status"] = "ok"
    out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
