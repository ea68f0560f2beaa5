"""Measure one saved model in a fresh process, with plain transformers (no llm-surgeon).

``python -m bench.deploy_worker TASK_JSON RESULT_JSON``; the task is one of

* ``{"kind": "measure", "folder", "windows", "threads", "repeats", "decode_tokens"}``: bytes of
  the safetensors files, parameter count, RSS before and peak RSS after loading, prefill
  latency of one window (median of ``repeats`` forwards after one warm-up) and greedy decode
  tokens/s (batch 1, the window as prompt, ``decode_tokens`` steps after the first new token;
  median of ``repeats``);
* ``{"kind": "compare", "folder", "reference", "windows", "threads"}``: both models on every
  window: max |Δlogit| and each window's mean next-token cross-entropy.

``windows`` is a ``.pt`` file with token ids ``(n, seqlen)``. Folders with their own modeling
code load with ``trust_remote_code=True``. The result records whether llm_surgeon was imported.
"""

from __future__ import annotations

import json
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def rss_mb() -> float:
    """Current resident memory of this process (MiB)."""
    import os

    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    """High-water mark of this process's resident memory (MiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load(folder: str):
    """``AutoModelForCausalLM.from_pretrained`` in float32, eval mode; own code where needed."""
    import torch
    from transformers import AutoModelForCausalLM

    config = json.loads((Path(folder) / "config.json").read_text())
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32,
                                                 trust_remote_code="auto_map" in config)
    return model.eval()


def prefill_seconds(model, ids, repeats: int, sync: Callable[[], None] = lambda: None) -> list[float]:
    """Seconds of ``repeats`` forwards of ``ids`` ``(1, seqlen)``, after one warm-up."""
    import torch

    times = []
    with torch.no_grad():
        for i in range(repeats + 1):
            start = time.perf_counter()
            model(ids)
            sync()
            if i:
                times.append(time.perf_counter() - start)
    return times


def decode_rates(model, prompt, tokens: int, repeats: int, sync: Callable[[], None] = lambda: None
                 ) -> list[float]:
    """Greedy decode tokens/s over ``tokens`` steps after the first new token, ``repeats`` times.

    Each generated token is time-stamped by a stopping criterion that never stops, so the
    prefill (which ends with the first new token) is left out.
    """
    import torch
    from transformers import StoppingCriteria

    class Stamp(StoppingCriteria):
        def __init__(self) -> None:
            self.times: list[float] = []

        def __call__(self, input_ids, scores, **kwargs):
            sync()
            self.times.append(time.perf_counter())
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

    rates = []
    for _ in range(repeats):
        stamp = Stamp()
        model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                       max_new_tokens=tokens + 1, min_new_tokens=tokens + 1, stopping_criteria=[stamp],
                       pad_token_id=model.config.eos_token_id)
        rates.append(tokens / (stamp.times[-1] - stamp.times[0]))
    return rates


def measure(task: dict[str, Any]) -> dict[str, Any]:
    import torch

    folder = Path(task["folder"])
    rss_before = rss_mb()
    model = load(str(folder))
    result: dict[str, Any] = {
        "safetensors_bytes": sum(p.stat().st_size for p in folder.glob("*.safetensors")),
        "parameters": sum(p.numel() for p in model.parameters()),
        "rss_mb_before_load": rss_before,
        "peak_rss_mb_after_load": peak_rss_mb(),
        "class": type(model).__name__,
    }
    window = torch.load(task["windows"])[:1]
    prefill = prefill_seconds(model, window, task["repeats"])
    decode = decode_rates(model, window, task["decode_tokens"], task["repeats"])
    result |= {"prefill_s": statistics.median(prefill), "prefill_s_all": prefill,
               "decode_tokens_per_s": statistics.median(decode), "decode_tokens_per_s_all": decode,
               "peak_rss_mb": peak_rss_mb()}
    return result


def compare(task: dict[str, Any]) -> dict[str, Any]:
    import torch

    model, reference = load(task["folder"]), load(task["reference"])
    windows = torch.load(task["windows"])
    max_diff, nll, ref_nll = 0.0, [], []
    with torch.no_grad():
        for ids in windows:
            ids = ids[None]
            logits, ref = model(ids).logits, reference(ids).logits
            max_diff = max(max_diff, (logits - ref).abs().max().item())
            for out, store in ((logits, nll), (ref, ref_nll)):
                store.append(torch.nn.functional.cross_entropy(out[0, :-1], ids[0, 1:]).item())
    return {"max_abs_dlogit": max_diff, "window_nll": nll, "reference_window_nll": ref_nll,
            "windows": len(windows)}


def main(argv: list[str]) -> int:
    task_path, result_path = Path(argv[0]), Path(argv[1])
    task = json.loads(task_path.read_text())
    import torch

    torch.set_num_threads(task["threads"])
    result = measure(task) if task["kind"] == "measure" else compare(task)
    result["llm_surgeon_imported"] = any(m.split(".")[0] == "llm_surgeon" for m in sys.modules)
    result["torch_threads"] = torch.get_num_threads()
    result_path.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
