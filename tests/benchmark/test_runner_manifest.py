"""The runner on the real manifest and real adapters.

Every row of ``manifests/methods.toml`` is planned against a tiny build and taken as far as the
runner goes before training (variant derived, adapter resolved, job built, ``unavailable``
asked): the rows change as methods are added, so what is checked are invariants, not a list of
statuses. Then one torchvision baseline row (Table I #2, Faster R-CNN) and DEAL run end to end
through ``run_benchmark`` on the ``smoke`` schedule.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from bench_fixture import write_tiny_dataset

from benchmark.manifest import load_methods
from benchmark.results import ResultsStore
from benchmark.runner import build_job, plan, prepare_variants, resolve_adapter, run_benchmark

#: What an ``unavailable`` reason must contain: how to get what is missing (a command to run,
#: a command-line option, adapter option or variable to set, a place to download from).
REMEDY = re.compile(r"pip install|mim install|git clone|hf download|tinyset [a-z]+|"
                    r"--[a-z][a-z-]+|TINYSET_[A-Z0-9_]+|option '\w+'|https?://")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_dataset(tmp_path_factory.mktemp("ds") / "tiny", size=64,
                              counts={"train": 6, "val": 2, "test": 3}, objects=4)


@pytest.fixture
def bare_machine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No user settings: no TINYSET_* paths, an empty offline Hugging Face cache."""
    for name in list(os.environ):
        if name.startswith(("TINYSET_", "HF_", "HUGGING")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_every_manifest_row_plans_and_says_what_it_misses(data: Path, tmp_path: Path,
                                                          bare_machine: None) -> None:
    methods = load_methods()
    specs = prepare_variants(plan(methods, data, tmp_path / "runs"))
    assert [s.method["id"] for s in specs] == [m.id for m in methods]  # one run per row
    runnable, unavailable = [], {}
    for spec in specs:
        row = f"row {spec.method['id']} ({spec.method['adapter']}, {spec.setting})"
        assert spec.variant_error is None, (row, spec.variant_error)
        # The adapter exists: a registry name or module:Class that imports (frameworks are
        # imported lazily by the adapters, so this holds without them).
        adapter = resolve_adapter(str(spec.method["adapter"]))
        assert callable(adapter.train) and callable(adapter.predict), row
        job = build_job(spec, tmp_path / "work" / spec.method["id"])
        reason = adapter.unavailable(job)
        if reason is None:
            runnable.append(spec.method["id"])
            continue
        unavailable[spec.method["id"]] = reason
        assert isinstance(reason, str) and reason.strip(), row
        assert "\n" not in reason, (row, reason)
        assert REMEDY.search(reason), f"{row}: the reason does not say how to get it: {reason}"
    # Both kinds exist on a bare machine: rows that run here, rows that need a download/checkout.
    assert runnable and unavailable


def _one_run(data: Path, runs: Path, row: str) -> dict:
    (method,) = [m for m in load_methods() if m.id == row]
    specs = plan([method], data, runs, schedule="smoke")
    (record,) = run_benchmark(specs)
    assert record["status"] == "ok", record["status"]
    run_dir = ResultsStore(runs).run_dir(specs[0].key)
    predictions = json.loads((run_dir / "predictions.json").read_text())
    test_images = {i["id"] for i in json.loads(
        (data / "annotations" / "test.json").read_text())["images"]}
    assert predictions and {p["image_id"] for p in predictions} <= test_images
    assert all(0 <= record["metrics"][k] <= 1 for k in ("AP25", "AP50", "AP75"))
    assert record["config"]["device"] == "cpu" and record["notes"]
    assert run_benchmark(specs) == []  # stored ok: a second start does not run it again
    return record


@pytest.mark.slow
@pytest.mark.torch
def test_torchvision_row_and_deal_run_end_to_end(data: Path, tmp_path: Path) -> None:
    import torch

    torch.set_num_threads(1)
    _one_run(data, tmp_path / "tv", "2")
    deal = _one_run(data, tmp_path / "deal", "deal")
    assert deal["notes"]["steps"] > 0 and Path(deal["notes"]["checkpoint"]).is_file()
