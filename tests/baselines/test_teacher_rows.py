"""The teacher–student rows of Table I run end to end through the benchmark (cheap smoke runs)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmark"))
from bench_fixture import write_tiny_dataset

from benchmark.manifest import load_methods
from benchmark.results import ResultsStore
from benchmark.runner import plan, run_benchmark

pytest.importorskip("torch")

#: A light network and two steps: plumbing, not learning (the mechanisms have their own tests).
LIGHT = {"backbone": "resnet18", "fpn_channels": 16, "smoke_iters": 2, "smoke_size": 64,
         "roi_batch": 32, "test_proposals": 100, "jitter_times": 3}


@pytest.mark.parametrize("row", ["16", "17", "25", "26"])  # one row per method
def test_row_runs_ok_through_the_benchmark_and_resumes(tmp_path: Path, row: str) -> None:
    data = write_tiny_dataset(tmp_path / "tiny", counts={"train": 6, "val": 1, "test": 1},
                              size=64, objects=4)
    method = load_methods().get(row)
    specs = plan([method], data, tmp_path / "runs", schedule="smoke", extra=LIGHT)
    rec = run_benchmark(specs)[0]
    assert rec["status"] == "ok", rec["status"]
    notes = rec["notes"]
    assert notes["implementation"] == f"native:{method.options['method']}"
    assert notes["iterations"] == 2 and notes["schedule"] == "smoke"
    assert 0.0 <= rec["metrics"]["AP50"] <= 1.0
    # a finished run is stored; planning it again runs nothing
    assert run_benchmark(plan([method], data, tmp_path / "runs", schedule="smoke",
                              extra=LIGHT)) == []
    assert ResultsStore(tmp_path / "runs").load(specs[0].key)["status"] == "ok"
