"""Prune with llmcompressor's SparseGPT or Wanda modifier on our calibration windows.

An external cross-check, not part of llm-surgeon: run it in its own virtual
environment (``pip install llmcompressor``) on the output of
``prepare_llmcompressor.py``, then evaluate the saved folder with
``llm-surgeon eval OUT --data-dir DIR --split test --seqlen 512 --eval-windows 64``::

    python run_llmcompressor.py sparsegpt 2:4 --input /tmp/llmc-input --out /tmp/llmc-sparsegpt-2of4
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import torch
from datasets import Dataset
from llmcompressor import oneshot
from llmcompressor.modifiers.pruning import SparseGPTModifier, WandaPruningModifier
from safetensors.torch import save_model
from transformers import AutoModelForCausalLM, AutoTokenizer

#: The Linear modules llm-surgeon prunes in a Llama block (lm_head and embeddings excluded).
TARGETS = [r"re:.*self_attn\.(q|k|v|o)_proj$", r"re:.*mlp\.(gate|up|down)_proj$"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("method", choices=["sparsegpt", "wanda"])
    parser.add_argument("structure", choices=["element", "2:4"])
    parser.add_argument("--input", type=Path, required=True, help="prepare_llmcompressor.py output")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    src = args.input / "model"
    model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(src)
    ids = torch.load(args.input / "calibration.pt")
    dataset = Dataset.from_dict({"input_ids": ids.tolist(), "attention_mask": torch.ones_like(ids).tolist()})
    options = dict(sparsity=0.5, mask_structure="2:4" if args.structure == "2:4" else "0:0",
                   targets=TARGETS, ignore=["lm_head"])
    if args.method == "sparsegpt":
        modifier = SparseGPTModifier(**options, block_size=128, dampening_frac=0.01)
    else:
        modifier = WandaPruningModifier(**options)
    start = time.perf_counter()
    oneshot(model=model, tokenizer=tokenizer, dataset=dataset, recipe=[modifier],
            num_calibration_samples=len(ids), max_seq_length=ids.shape[1],
            shuffle_calibration_samples=False, pipeline="sequential")
    seconds = time.perf_counter() - start
    total = zeros = 0
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and "layers." in name:
            total += module.weight.numel()
            zeros += int((module.weight == 0).sum())
    print(f"RESULT {args.method} {args.structure} sparsity {zeros / total:.4f} seconds {seconds:.1f}")
    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    for f in src.iterdir():
        if f.is_file() and not f.name.endswith(".safetensors"):
            shutil.copy(f, args.out / f.name)
    save_model(model, str(args.out / "model.safetensors"))


if __name__ == "__main__":
    main()
