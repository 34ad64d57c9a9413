"""Shared fixtures of the reliability suite. Its figures (hostile inputs refused, kills that
landed) are gathered from every xdist worker and printed by ``tests/conftest.py``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _examples_independent_of_imports(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The same Hypothesis examples in every run, whatever ran before in the process.

    Besides its seed (``derandomize=True``), Hypothesis draws literals found in the project
    modules already imported into the process ("local constants", hypothesis >= 6.131), so the
    examples a test gets depend on which tests ran before it in that worker: under xdist the
    figures changed from run to run. Here that source is emptied (a private function, hence
    the guard: without it, nothing is patched).
    """
    try:
        from hypothesis.internal.conjecture import providers
        from hypothesis.internal.constants_ast import Constants
    except ImportError:  # pragma: no cover - another Hypothesis layout
        yield
        return
    if not hasattr(providers, "_get_local_constants"):  # pragma: no cover
        yield
        return
    monkeypatch.setattr(providers, "_get_local_constants", Constants)
    providers.CONSTANTS_CACHE.cache.clear()
    yield
    providers.CONSTANTS_CACHE.cache.clear()


#: The sources of the small build shared by the crash and secret tests (all four native
#: families: COCO JSON, VOC XML, CSV, VisDrone text).
BUILD_SOURCES = "hrsid,pest24,sku110k,visdrone"


@pytest.fixture(scope="session")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Synthetic raw sources (``tinyset sources synth``)."""
    from _hostile import TINYSET, run_cli

    raw = tmp_path_factory.mktemp("raw")
    run_cli([TINYSET, "sources", "synth", "--out", str(raw), "--sources", BUILD_SOURCES])
    return raw


@pytest.fixture(scope="session")
def reference_build(raw: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """An uninterrupted ``tinyset build`` of ``raw`` and its wall time."""
    from _hostile import TINYSET, run_cli

    out = tmp_path_factory.mktemp("ref") / "out"
    wall, _ = run_cli([TINYSET, "build", "--raw", str(raw), "--out", str(out), "--workers", "2"])
    return out, wall
