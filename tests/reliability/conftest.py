"""Shared fixtures of the reliability suite. Its figures (hostile inputs refused, kills that
landed) are gathered from every xdist worker and printed by ``tests/conftest.py``."""

from __future__ import annotations

from pathlib import Path

import pytest

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
