"""``core/`` (the ``llm_surgeon`` package) never imports the built-in plugins directly."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "core"


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
