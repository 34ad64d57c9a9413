"""``tinyset demo`` (what ``make demo`` runs), smoke-tested on two synthetic sources and the DEAL
row: synthesize → build → derive → benchmark → report, through the real command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

TINYSET = str(Path(sys.executable).with_name("tinyset"))


@pytest.mark.slow
@pytest.mark.integration
def test_demo_runs_the_whole_flow(tmp_path: Path) -> None:
    from benchmark.protocols import SETTINGS

    out = tmp_path / "demo"
    p = subprocess.run([TINYSET, "demo", "--out", str(out), "--sources", "visdrone,hrsid",
                        "--methods", "deal", "--device", "cpu", "--minutes", "0.02"],
                       capture_output=True, text=True, timeout=900,
                       env={"NO_COLOR": "1", "COLUMNS": "200", "OMP_NUM_THREADS": "1",
                            "PATH": str(Path(sys.executable).parent), "HOME": str(tmp_path)})
    assert p.returncode == 0, p.stderr[-3000:]
    assert sorted(d.name for d in (out / "raw").iterdir()) == ["hrsid", "visdrone"]
    record = json.loads((out / "tinyset" / "build.json").read_text())
    assert sorted(record["sources"]) == ["hrsid", "visdrone"]
    variants = out / "tinyset" / "variants"
    assert {s for s in SETTINGS if (variants / s / "meta.json").is_file()} == set(SETTINGS)
    (result,) = (out / "runs").rglob("result.json")
    run = json.loads(result.read_text())
    assert run["status"] == "ok" and run["key"]["method"] == "deal" and run["metrics"]
    rows = [r for r in (out / "report_tableII.md").read_text().splitlines()
            if r.startswith("| DEAL |")]
    assert len(rows) == 1 and rows[0].endswith("| ok |"), rows  # measured beside the paper
    assert (out / "report_tableI.md").is_file() and (out / "report_tableII.html").is_file()


def test_demo_unknown_source_is_one_line(tmp_path: Path) -> None:
    p = subprocess.run([TINYSET, "demo", "--out", str(tmp_path / "d"), "--sources", "nope"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and "unknown source 'nope'" in p.stderr
