"""Load compact exports with plain transformers in a fresh ``python -I`` process.

Usage: ``python -I fresh_load.py MANIFEST.json``. The manifest maps a case name to
``{"folder", "plain", "inputs", "generate"}`` (``inputs``: a ``.pt`` file with ``ids``).
``llm_surgeon`` cannot be imported here (an import hook refuses it, although it is installed).
Writes ``RESULTS.json`` next to the manifest: per case the outputs file, parameter count,
weights of the decoder layers' Linears, class, module file and dtype, or the error; and whether llm_surgeon stayed out.
"""

import importlib.abc
import json
import sys
import traceback
from pathlib import Path


class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name.split(".")[0] == "llm_surgeon":
            raise ModuleNotFoundError(f"{name} is blocked in this process")


def _load_case(entry: dict) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    folder = entry["folder"]
    model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=not entry["plain"])
    model.eval()
    # (AutoTokenizer may pick a model-specific class for plain folders, which need not fit
    # the tests' tokenizers; the fast tokenizer file is what the folder must carry.)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(folder)
    ids = torch.load(entry["inputs"])["ids"]
    outputs = {}
    with torch.no_grad():
        outputs["logits"] = model(ids).logits
    if entry.get("generate", True):
        outputs["generated"] = model.generate(ids, attention_mask=torch.ones_like(ids),
                                              max_new_tokens=6, do_sample=False)
    out = Path(folder).with_suffix(".fresh.pt")
    torch.save(outputs, out)
    linears = [m for name, m in model.named_modules()
               if ".layers." in name and type(m).__name__ in ("Linear", "IndexedLinear")]
    return {
        "output": str(out),
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "linear_weights": sum(m.weight.numel() for m in linears),
        "class": type(model).__name__,
        "module_file": sys.modules[type(model).__module__].__file__,
        "dtype": str(model.dtype),
        "vocab_size": len(tokenizer),
    }


def _main(manifest_path: Path) -> None:
    assert "llm_surgeon" not in sys.modules
    sys.meta_path.insert(0, _Block())
    import torch

    torch.set_num_threads(1)
    manifest = json.loads(manifest_path.read_text())
    results = {}
    for name, entry in manifest.items():
        try:
            results[name] = _load_case(entry)
        except Exception:
            results[name] = {"error": traceback.format_exc()}
    try:
        import llm_surgeon  # noqa: F401
    except ImportError:
        blocked = not any(m.split(".")[0] == "llm_surgeon" for m in sys.modules)
    else:
        blocked = False
    report = {"cases": results, "llm_surgeon_blocked": blocked}
    manifest_path.with_name("RESULTS.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    _main(Path(sys.argv[1]))
