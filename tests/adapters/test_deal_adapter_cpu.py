"""DEAL on the cpu schedule: the tiny preset, and a step count bought by counted operations."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmark"))
from bench_fixture import write_tiny_dataset

from adapters.base import Job
from adapters.deal_adapter import DealAdapter
from baselines.schedules import REFERENCE_FLOPS_PER_CPU_SECOND

torch = pytest.importorskip("torch")


def test_cpu_budget_buys_steps_from_counted_operations(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    data = write_tiny_dataset(tmp_path / "tiny", size=96, counts={"train": 3, "val": 1,
                                                                  "test": 1})
    job = Job(method={"id": "deal", "options": {}}, data_dir=data,
              train_json=data / "annotations" / "train.json",
              eval_json=data / "annotations" / "test.json", work_dir=tmp_path / "w",
              schedule="cpu", extra={"minutes": 0.01})
    adapter = DealAdapter()
    assert adapter._config(job).preset == "tiny"
    steps, minutes = adapter._steps(job, 3, 2)
    flops = json.loads((tmp_path / "w" / "deal" / "budget.json").read_text())["flops_per_step"]
    assert minutes is None and flops > 1e6
    assert steps == max(1, int(0.01 * 60 * REFERENCE_FLOPS_PER_CPU_SECOND // flops))
    # counted once and kept: a resumed run buys the same steps; a fresh count agrees
    assert adapter._steps(job, 3, 2)[0] == steps
    assert adapter._count_step_flops(job) == flops
