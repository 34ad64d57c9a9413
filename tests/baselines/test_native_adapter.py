"""The native adapter: a job becomes a MethodContext; the named method trains and predicts."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmark"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_fixture import write_tiny_dataset

import baselines.methods as bm
from benchmark.manifest import Method
from benchmark.runner import plan, run_benchmark
from tinyset_builder.errors import TinysetError

pytest.importorskip("torch")


def row(method: str, **options) -> Method:
    return Method(id="x", name="Oracle", paradigm="semi", setting="semi-10", backbone="-",
                  schedule="1x", adapter="native", options={"method": method, **options})


def test_a_native_method_runs_through_the_benchmark(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(bm.METHODS, "oracle", "_oracle_method")
    data = write_tiny_dataset(tmp_path / "tiny", counts={"train": 10, "val": 1, "test": 2})
    rec = run_benchmark(plan([row("oracle", jitter=0.5)], data, tmp_path / "runs",
                             schedule="cpu", extra={"minutes": 2}))[0]
    assert rec["status"] == "ok" and rec["schedule"] == "cpu 2 min"
    notes = rec["notes"]
    assert notes["implementation"] == "native:oracle" and notes["jitter"] == 0.5
    assert notes["plan"] == "cpu 2 min" and notes["unlabeled"].endswith("train_unlabeled.json")
    assert rec["metrics"]["AP50"] == pytest.approx(1.0)


def test_unknown_native_methods_are_unavailable(tmp_path: Path) -> None:
    data = write_tiny_dataset(tmp_path / "tiny", counts={"train": 2, "val": 1, "test": 1})
    rec = run_benchmark(plan([row("nope")], data, tmp_path / "runs", schedule="smoke"))[0]
    assert rec["status"].startswith("unavailable: no native method 'nope'")
    with pytest.raises(TinysetError, match="unknown method 'nope'"):
        bm.get_method("nope")
