"""The modeling files of compact folders stand alone: torch, transformers and each other only."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

MODELING = Path(__file__).resolve().parents[2] / "core" / "export" / "modeling"
ALLOWED = {"torch", "transformers", "huggingface_hub", "__future__"}
FILES = sorted(p for p in MODELING.glob("*.py") if p.name != "__init__.py")


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_imports_are_relative_siblings_or_torch_and_transformers(path: Path) -> None:
    bad = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: must be a sibling file
                if node.level != 1 or not (MODELING / f"{node.module}.py").is_file():
                    bad.append(f"{'.' * node.level}{node.module}")
                continue
            names = [node.module]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top not in ALLOWED and top not in sys.stdlib_module_names:
                bad.append(name)
    assert bad == []


def test_every_modeling_file_is_checked() -> None:
    assert {p.name for p in FILES} >= {
        "surgeon_common.py",
        "configuration_surgeon_llama.py",
        "configuration_surgeon_opt.py",
        "modeling_surgeon_llama.py",
        "modeling_surgeon_opt.py",
    }
