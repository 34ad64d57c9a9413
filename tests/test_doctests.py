"""The examples in docstrings are run, so they cannot drift from what the code does."""

from __future__ import annotations

import doctest
import importlib

import pytest

#: Every module whose docstrings hold ``>>>`` examples (none of them imports torch).
MODULES = ["tinyset_builder.coco", "tinyset_builder.tiling", "benchmark.evaluate",
           "benchmark.protocols.semi", "benchmark.manifest"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no examples left: drop it from MODULES"
    assert result.failed == 0


def test_every_module_with_examples_is_listed() -> None:
    """A new ``>>>`` example anywhere gets run too (add its module to MODULES)."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    found = {".".join(py.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
             for pkg in ("tinyset_builder", "benchmark", "adapters", "deal")
             for py in (root / pkg).rglob("*.py") if ">>> " in py.read_text(encoding="utf-8")}
    assert found <= set(MODULES), sorted(found - set(MODULES))
