"""Layering: one dependency direction in ``core/``, and plugins use only the plugin-facing API.

The contract itself is import-linter's ``layers`` contract in ``pyproject.toml``
(docs/ARCHITECTURE.md); these tests run it on the real package and on a copy with one
reverse import added, which must break it.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "core"
#: What plugins may import of llm_surgeon (docs/ARCHITECTURE.md, "Plugin-facing API").
PLUGIN_API = {
    "llm_surgeon", "llm_surgeon.curvature", "llm_surgeon.solver", "llm_surgeon.pruning",
    "llm_surgeon.methods", "llm_surgeon.model", "llm_surgeon.data", "llm_surgeon.errors",
    "llm_surgeon.util", "llm_surgeon.testing", "llm_surgeon.registry",
}


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
            names += [f"{node.module}.{a.name}" for a in node.names]
    return names


def test_core_sources_do_not_import_plugins():
    offenders = {
        str(path.relative_to(CORE)): name
        for path in CORE.rglob("*.py")
        for name in _imports(path)
        if name == "llm_surgeon.plugins" or name.startswith("llm_surgeon.plugins.")
    }
    assert offenders == {}


def test_importing_core_loads_no_plugins_and_no_heavy_libraries():
    script = (
        "import sys, llm_surgeon, llm_surgeon.cli, llm_surgeon.run.config, llm_surgeon.registry\n"
        "bad = [m for m in sys.modules if m.startswith('llm_surgeon.plugins') or m == 'transformers']\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_public_api_resolves():
    import llm_surgeon

    for name in llm_surgeon.__all__:
        assert getattr(llm_surgeon, name) is not None, name
    assert llm_surgeon.prune.__module__ == "llm_surgeon.run.runner"
    assert isinstance(llm_surgeon.__version__, str)


def test_all_matches_the_lazy_exports():
    import llm_surgeon

    assert set(llm_surgeon.__all__) == set(llm_surgeon._EXPORTS) | {"__version__"}


def _lint_imports(config: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    pytest.importorskip("importlinter")
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    code = "import sys; from importlinter.cli import lint_imports_command as c; sys.exit(c())"
    return subprocess.run([sys.executable, "-c", code, "--config", str(config), "--no-cache"],
                          capture_output=True, text=True, timeout=300, env=env, cwd=config.parent)


def test_the_dependency_contract_holds():
    result = _lint_imports(ROOT / "pyproject.toml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(("module", "reverse_import"), [
    ("solver/live.py", "from llm_surgeon.methods.steps import estimate"),  # solver -> methods
    ("util/io.py", "from llm_surgeon.run.config import RunConfig"),  # util -> run
    ("model/state.py", "from llm_surgeon.data.loss import next_token_loss"),  # model -> data (siblings)
    ("export/plan.py", "from llm_surgeon.curvature.types import Curvature"),  # export -> curvature (siblings)
    ("export/modeling/surgeon_common.py", "from llm_surgeon.util.io import write_json"),  # standalone files
])
def test_a_reverse_import_breaks_the_contract(tmp_path, module, reverse_import):
    copy = tmp_path / "src" / "llm_surgeon"
    shutil.copytree(CORE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / module
    target.write_text(target.read_text(encoding="utf-8") + f"\n{reverse_import}\n", encoding="utf-8")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    result = _lint_imports(tmp_path / "pyproject.toml", pythonpath=tmp_path / "src")
    assert result.returncode != 0, result.stdout
    assert "BROKEN" in result.stdout and module.split("/")[0] in result.stdout


def _plugin_sources() -> list[Path]:
    sources = sorted((ROOT / "plugins").rglob("*.py"))
    sources += sorted((ROOT / "tests" / "fixtures" / "toy_plugin").rglob("*.py"))
    sources += sorted((ROOT / "examples").rglob("*.py")) if (ROOT / "examples").is_dir() else []
    return sources


def test_plugins_import_only_the_plugin_facing_api():
    offenders = {}
    for path in _plugin_sources():
        for name in _imports(path):
            if not name.startswith("llm_surgeon") or name.startswith("llm_surgeon.plugins"):
                continue
            module = name if name in PLUGIN_API else name.rsplit(".", 1)[0]
            if module not in PLUGIN_API:
                offenders.setdefault(str(path.relative_to(ROOT)), []).append(name)
    assert offenders == {}
