"""Export SmolLM2 as a plain Hugging Face folder plus our exact calibration windows.

Run in the llm-surgeon environment; the output feeds ``run_llmcompressor.py``, which
runs in a separate environment with llmcompressor installed::

    python bench/external/prepare_llmcompressor.py --data-dir DIR --out /tmp/llmc-input
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from llm_surgeon.data import CalibrationConfig, DataConfig, calibration_windows
from llm_surgeon.model import load_model, save_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--data-dir", required=True, help="folder with wiki.{valid,test}.raw")
    parser.add_argument("--nsamples", type=int, default=32)
    parser.add_argument("--seqlen", type=int, default=512)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    model, tokenizer = load_model(args.model)
    save_model(model, tokenizer, args.out / "model")
    calibration = CalibrationConfig(data=DataConfig(data_dir=args.data_dir, split="validation"),
                                    nsamples=args.nsamples, seqlen=args.seqlen, seed=0)
    windows, _ = calibration_windows(tokenizer, calibration)
    torch.save(windows, args.out / "calibration.pt")
    print(f"wrote {args.out / 'model'} and {args.out / 'calibration.pt'} {tuple(windows.shape)}")


if __name__ == "__main__":
    main()
