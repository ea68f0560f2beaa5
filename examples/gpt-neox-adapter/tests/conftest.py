"""The example's tests need the example installed (``pip install ./examples/gpt-neox-adapter``).

Without it they are skipped, except in CI (``CI`` set), which installs it and must run them.
"""

from __future__ import annotations

import importlib.metadata
import os

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    try:
        importlib.metadata.distribution("llm-surgeon-gpt-neox")
    except importlib.metadata.PackageNotFoundError:
        if os.environ.get("CI"):
            raise pytest.UsageError("CI must install ./examples/gpt-neox-adapter before the tests") from None
        skip = pytest.mark.skip(reason="pip install ./examples/gpt-neox-adapter to run the example's tests")
        for item in items:
            if "gpt-neox-adapter" in str(item.fspath):
                item.add_marker(skip)
