"""Rows 5, 6, 9, 10, 13, 14 (HS-FPN, RFLA, DN-TOD, SSD-Det) run through the benchmark runner:
smoke schedule for all six, the cpu schedule for one (a tiny budget), on a tiny build."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmark"))
from bench_fixture import write_tiny_dataset

from benchmark.manifest import load_methods
from benchmark.runner import plan, run_benchmark

pytest.importorskip("torch")

ROWS = {"5": "hs_fpn", "6": "rfla", "9": "dn_tod", "10": "ssd_det", "13": "dn_tod",
        "14": "ssd_det"}
LIGHT = {"backbone": "resnet18", "fpn_channels": 64, "smoke_size": 64, "smoke_iters": 2,
         "batch_size": 1}


def test_the_six_rows_run_native_under_smoke(tmp_path: Path) -> None:
    data = write_tiny_dataset(tmp_path / "tiny", counts={"train": 2, "val": 1, "test": 1})
    manifest = load_methods()
    rows = [manifest.get(i) for i in ROWS]
    recs = run_benchmark(plan(rows, data, tmp_path / "runs", schedule="smoke", extra=LIGHT))
    for rec in recs:
        rid = rec["method"]["id"]
        assert rec["status"] == "ok", (rid, rec["status"])
        notes = rec["notes"]
        assert notes["implementation"] == f"native:{ROWS[rid]}" and notes["iterations"] == 2
    by_id = {r["method"]["id"]: r["notes"] for r in recs}
    assert by_id["6"]["variant"] == {"rfla": {"topk": [3, 1], "ratio": 0.9, "fraction": 0.5}}
    assert by_id["5"]["variant"]["neck"]["type"] == "hs_fpn"
    assert by_id["13"]["dn_tod"]["remembered_boxes"] > 0
    assert by_id["10"]["ssd_det"]["shake"] == 0.1 and by_id["14"]["ssd_det"]["shake"] == 0.2


def test_dn_tod_runs_under_the_cpu_schedule(tmp_path: Path) -> None:
    data = write_tiny_dataset(tmp_path / "tiny", counts={"train": 2, "val": 1, "test": 1})
    row = load_methods().get("13")
    extra = {**LIGHT, "minutes": 0.002, "crop": 64, "test_size": 128}
    rec = run_benchmark(plan([row], data, tmp_path / "runs", schedule="cpu", extra=extra))[0]
    assert rec["status"] == "ok" and rec["schedule"] == "cpu 0.002 min"
    assert rec["notes"]["iterations"] >= 1 and rec["notes"]["gflops_per_step"] > 0


def test_a_warm_started_variant_starts_from_the_plain_detector(tmp_path: Path) -> None:
    import torch

    from baselines.supervised import read_saved

    data = write_tiny_dataset(tmp_path / "tiny", counts={"train": 2, "val": 1, "test": 1})
    fcos = load_methods().get("11")  # plain FCOS on the same noise-40 labels as DN-TOD's row
    (base,) = run_benchmark(plan([fcos], data, tmp_path / "runs", schedule="smoke", extra=LIGHT))
    ckpt = Path(base["config"]["job"]["work_dir"]) / "model.pt"
    # lr 0: the warm-started DN-TOD's parameters must stay those of the plain FCOS
    extra = {**LIGHT, "init_checkpoint": str(ckpt), "smoke_lr": 0.0}
    (rec,) = run_benchmark(plan([load_methods().get("13")], data, tmp_path / "runs",
                                schedule="smoke", extra=extra))
    assert rec["status"] == "ok" and rec["notes"]["weights"] == f"all from {ckpt}"
    saved = read_saved(Path(rec["config"]["job"]["work_dir"]) / "model.pt")
    assert saved["config"]["init"]["parts"] == "all"
    want = read_saved(ckpt)["model"]
    params = [k for k, v in saved["model"].items() if v.is_floating_point() and "running" not in k]
    assert params and all(torch.equal(saved["model"][k], want[k]) for k in params)


def test_a_control_row_is_its_row_trained_by_another_method() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    import label_efficient as le

    rows = {m.id: m for m in load_methods().methods}
    ctl = le.control(rows["14"], "rfla")
    assert (ctl.id, ctl.options["method"], ctl.setting, ctl.paper) == (
        "14-as-rfla", "rfla", "noise-40", {})
    assert {k: v for k, v in ctl.options.items() if k != "method"} == {
        k: v for k, v in rows["14"].options.items() if k != "method"}
    assert rows["14"].options["method"] == "ssd_det"          # the manifest row is untouched


def test_the_table_counts_seeds_whose_box_regression_collapsed() -> None:
    """Over half the boxes under 1 px marks a seed collapsed; missing shares are not counted."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    import label_efficient as le

    assert le.collapsed([0.0, 0.9999, 0.05]) == "1 of 3"
    assert le.collapsed([0.5, None, 1.0]) == "1 of 2"        # exactly half is not over half
    assert le.collapsed([None]) == "—"
    row = {"setting": "noise-40", "id": "11", "name": "FCOS", "role": "baseline",
           "paper_AP50": 33.5, "AP50": [0.0, 27.3], "APvt": [0.0, 15.2], "APt": [0.0, 75.5],
           "iterations": [394, 394], "sub_pixel": [1.0, 0.0]}
    assert le.table([row]).splitlines()[-1].endswith("| [394, 394] | 1 of 2 |")
