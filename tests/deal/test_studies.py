"""DEAL's study rows run through the benchmark runner, and the tables render them (issue 20)."""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmark"))
from bench_fixture import write_tiny_dataset

from benchmark.manifest import load_methods
from benchmark.report_tables import load_studies, render_table

pytest.importorskip("timm")


#: Rows left out of the runner test to keep it cheap (their backbones are built below).
HEAVY = {"deal-bb-resnet50", "deal-bb-pvtv2", "deal-bb-swint"}


@pytest.fixture(scope="session")
def study_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every deal-studies row but :data:`HEAVY`, 2 training steps each, on a tiny build.

    Made once per test session even under xdist: the workers share the base temp folder's
    parent, and a file lock lets the first worker run the rows (pytest-xdist's recipe).
    """
    from filelock import FileLock  # a dependency of torch

    from benchmark.runner import plan, run_benchmark

    base = tmp_path_factory.getbasetemp()
    # Under xdist each worker's base is a child of the session's; without xdist it is the
    # session's own (its parent is shared by every session).
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "deal_studies"
    with FileLock(str(root) + ".lock"):
        if not (root / "done").is_file():
            data = write_tiny_dataset(root / "data", size=64,
                                      counts={"train": 2, "val": 1, "test": 2}, objects=4)
            rows = [m for m in load_methods().select(paradigm="deal-studies")
                    if m.id not in HEAVY]
            specs = plan(rows, data, root / "runs", schedule="smoke", extra={"steps": 2})
            records = run_benchmark(specs)
            bad = {r["key"]["method"]: r["status"] for r in records if r["status"] != "ok"}
            assert not bad, bad
            (root / "done").write_text("ok")
    return root / "runs"


def test_every_study_row_runs_ok_and_has_its_options(study_runs: Path) -> None:
    from benchmark.results import ResultsStore

    store = ResultsStore(study_runs)
    frame = store.frame()
    assert len(frame) == 17 - len(HEAVY) and set(frame["kind"]) == {"ok"}
    notes = {r["key"]["method"]: r["notes"] for r in store.records()}
    assert notes["deal-bb-dinov3"]["backbone"] == "dinov3"
    assert notes["deal-s1"]["backbone"] == "cnn"  # smoke: the tiny preset


@pytest.mark.parametrize("backbone", ["resnet50", "pvt_v2", "dinov3"])
def test_table_ivc_backbones_give_four_levels(backbone: str) -> None:
    import torch

    from deal.backbone import build_backbone
    from deal.config import get_config

    net = build_backbone(get_config("tiny", backbone=backbone,
                                    freeze_backbone=backbone == "dinov3"))
    levels = net(torch.rand(1, 3, 64, 96))
    assert [tuple(x.shape[1:]) for x in levels] == [
        (c, 64 // s, 96 // s) for c, s in zip(net.channels, (4, 8, 16, 32), strict=True)]
    assert any(p.requires_grad for p in net.parameters()) is (backbone != "dinov3")


def test_no_component_row_scores_zero_by_the_papers_rule(study_runs: Path) -> None:
    text = render_table("4d", study_runs, "csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    none = next(r for r in rows if r["Method id"] == "deal-abl-none")
    assert none["AP0.5 paper"] == "0.00" and none["AP0.5 measured"] == "0.00"
    assert none["Status"] == "ok"


@pytest.mark.parametrize("table", ["4a", "4b", "4c", "4d"])
def test_study_tables_show_paper_and_measured(study_runs: Path, table: str) -> None:
    spec = load_studies()[table]
    rows = list(csv.DictReader(io.StringIO(render_table(table, study_runs, "csv"))))
    assert [r["Method id"] for r in rows] == [r["method"] for r in spec["rows"]]
    metric = {"AP50": "AP0.5"}.get(spec["metrics"][0], spec["metrics"][0])
    for r, layout in zip(rows, spec["rows"], strict=True):
        ran = layout["method"] not in HEAVY
        assert r["Status"] == ("ok" if ran else "not run")
        assert (r[f"{metric} measured"] != "") is ran  # a measured number from the store
        assert (r[f"{metric} paper"] != "") == ("paper_row" in layout)
    for fmt in ("md", "latex", "html", "rich"):
        assert spec["rows"][0]["method"] in render_table(table, study_runs, fmt)


def test_paper_numbers_come_from_the_csv(tmp_path: Path) -> None:
    md = render_table("4c", tmp_path, "md")  # an empty store: paper numbers, "not run"
    assert "| ResNet50 | deal-bb-resnet50 | setting (3) | 47.7 / – |" in md
    assert "not run" in md
    rows = list(csv.DictReader(io.StringIO(render_table("4b", tmp_path, "csv"))))
    assert [r["AP0.5 paper"] for r in rows][:4] == ["53.50", "55.30", "55.80", "58.20"]


def test_table_ii_own_layout(tmp_path: Path) -> None:
    md = render_table("II", tmp_path, "md")
    assert "| Method | Backbone | Schedule | Setting | AP0.25 | AP0.5 |" in md
    # Table II prints 1× for P2BNet (Table I: 2×) and its setting in the paper's words.
    assert "| P2BNet | ResNet-50 | 1× | Center Point | 4.6 / – |" in md
    assert md.index("**not in the paper:**") < md.index("| YOLOv8-P2 |")
    assert md.index("**ours:**") < md.index("**not in the paper:**")


def test_table_v_ratios_to_rt_detr(tmp_path: Path) -> None:
    (tmp_path / "deal_table5.json").write_text(json.dumps({
        "device": "cpu", "input": "64x64", "how": "test", "command": "hand-made",
        "rows": {"RT-DETR": {"train_time_ms": 100.0, "train_memory_mb": 50.0,
                             "infer_time_ms": 20.0, "infer_memory_mb": 10.0, "status": "ok"},
                 "DEAL": {"train_time_ms": 250.0, "train_memory_mb": 60.0,
                          "infer_time_ms": 30.0, "infer_memory_mb": 12.0, "status": "ok"}}}))
    rows = list(csv.DictReader(io.StringIO(render_table("5", tmp_path, "csv"))))
    deal = next(r for r in rows if r["Method"] == "DEAL")
    assert deal["Training time paper"] == "3.241" and deal["Training time measured"] == "2.500"
    assert deal["Inference memory measured"] == "1.200"
    sam3 = next(r for r in rows if r["Method"] == "SAM3")
    assert sam3["Inference time paper"] == "6.025" and sam3["Inference time measured"] == ""
    md = render_table("V", tmp_path, "md")
    assert "Measured absolute values" not in md  # CPU: ratios only
