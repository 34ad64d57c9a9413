"""Reports from a results store: golden Markdown, LaTeX/CSV/HTML/rich renderings, bad input."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd
import pytest

from benchmark.report import render, report_frame, write_report
from benchmark.results import SCHEMA, ResultsStore, RunKey
from tinyset_builder.errors import TinysetError

GOLDEN = Path(__file__).resolve().parent / "golden"
DATASET = "tiny-0123abcd"


def record(method: str, setting: str, seed: int, status: str = "ok",
           ap50: float | None = None, **metrics: float) -> dict:
    """A run record as the runner writes it (fractions as the evaluator returns them)."""
    m = None
    if ap50 is not None:
        m = {"AP25": ap50 + 0.1, "AP50": ap50, "AP75": ap50 / 2, "AP": ap50 / 3,
             "APvt": ap50 / 4, "APt": ap50 / 2, "APs": ap50, "APm": -1.0, **metrics}
    names = {"2": ("Faster R-CNN", "full", "torchvision"),
             "4": ("RT-DETR", "full", "ultralytics"),
             "5": ("HS-FPN (Faster R-CNN)", "full", "external"),
             "15": ("Faster R-CNN", "semi", "torchvision"),
             "yolov8-p2": ("YOLOv8-P2", "full", "ultralytics")}
    name, paradigm, adapter = names[method]
    return {"schema": SCHEMA, "key": {"dataset": DATASET, "method": method, "setting": setting,
                                      "seed": seed},
            "method": {"id": method, "name": name, "paradigm": paradigm, "adapter": adapter},
            "status": status, "metrics": m, "notes": {}, "schedule": "smoke",
            "durations": {"train": 1.0, "predict": 0.5, "total": 2.0}}


@pytest.fixture
def store(tmp_path: Path) -> ResultsStore:
    s = ResultsStore(tmp_path / "runs")
    for rec in (record("2", "full", 0, ap50=0.30), record("2", "full", 1, ap50=0.20),
                record("4", "full", 0, "unavailable: adapter 'ultralytics' not "
                                       "implemented/installed (ModuleNotFoundError: No module "
                                       "named 'adapters.ultralytics_adapter'); pip install "
                                       "'tinyset[ultralytics]'"),
                record("5", "full", 0, "failed: RuntimeError: CUDA out of memory"),
                record("yolov8-p2", "full", 0, ap50=0.125),
                record("15", "semi-1", 0, ap50=0.05)):
        k = rec["key"]
        s.save(RunKey(k["dataset"], k["method"], k["setting"], k["seed"]), rec)
    return s


def test_markdown_matches_golden(store: ResultsStore) -> None:
    text = render(report_frame(store, paradigms=["full", "semi"]), "md")
    golden = GOLDEN / "report_table1.md"
    assert text == golden.read_text(encoding="utf-8")


def test_frame_averages_ok_seeds_in_percent(store: ResultsStore) -> None:
    f = report_frame(store, paradigms=["full"])
    row = f[f["id"] == "2"].iloc[0]
    assert row["AP50_measured"] == pytest.approx(25.0) and row["seeds"] == 2
    assert row["AP50_std"] == pytest.approx(5.0)
    assert row["AP50_paper"] == 43.2
    assert math.isnan(row["APm_measured"])  # -1 (undefined) is not averaged as a number
    # Rows of the paradigm that never ran are listed as such, with the paper's numbers.
    row6 = f[f["id"] == "6"].iloc[0]
    assert row6["status"] == "not run" and row6["AP50_paper"] == 54.6
    assert list(f["id"])[:7] == ["1", "2", "3", "4", "5", "6", "yolov8-p2"]


def test_table_ii_layout(store: ResultsStore) -> None:
    f = report_frame(store, table="II")
    assert list(dict.fromkeys(f["group"])) == ["fully-supervised", "point-supervised",
                                               "zero-shot (one-box-prompt)",
                                               "zero-shot (text-prompt)", "ours"]
    deal = f[f["id"] == "deal"].iloc[0]
    assert deal["AP50_paper"] == 53.8 and deal["status"] == "not run"


def test_latex_csv_rich_and_html(store: ResultsStore, tmp_path: Path) -> None:
    frame = report_frame(store, paradigms=["full"])
    tex = render(frame, "latex")
    assert tex.count(r"\begin{tabular}") == 1 and r"\bottomrule" in tex
    assert r"43.2 & 25.0" in tex  # paper and measured AP50 of #2 side by side
    assert "HS-FPN (Faster R-CNN)" in tex and "#" not in tex.replace(r"\#", "")

    csv_path = tmp_path / "t.csv"
    write_report(store.root, "csv", csv_path, paradigms=["full"])
    back = pd.read_csv(csv_path, dtype={"id": str})
    assert back.loc[back["id"] == "2", "AP50_measured"].item() == 25.0
    assert back.loc[back["id"] == "2", "AP50_paper"].item() == 43.2

    text = render(frame, "rich")
    assert "Faster R-CNN" in text and "43.2 / 25.0" in text and "unavailable" in text
    assert "YOLOv8-P2 [yolov8-p2]" in text  # ids in brackets survive rich markup

    page = render(frame, "html")
    assert page.count("data:image/png;base64,") == 2
    # Self-contained: no external scripts, styles or images.
    assert not re.search(r"(src|href)=['\"]https?:", page)
    assert "failed: RuntimeError: CUDA out of memory" in page


def test_bad_input(store: ResultsStore, tmp_path: Path) -> None:
    with pytest.raises(TinysetError, match="results store not found"):
        report_frame(ResultsStore(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(TinysetError, match="no run records"):
        report_frame(ResultsStore(tmp_path / "empty"))
    with pytest.raises(TinysetError, match="unknown format 'pdf'"):
        render(report_frame(store), "pdf")
    with pytest.raises(TinysetError, match="unknown paradigm"):
        report_frame(store, paradigms=["semis"])
    with pytest.raises(TinysetError, match="not in"):
        report_frame(store, datasets=["other-00000000"])


def test_cli_report_and_benchmark_errors(store: ResultsStore, tmp_path: Path, capsys) -> None:
    from tinyset_builder.cli import main

    assert main(["report", "--runs", str(store.root), "--format", "md",
                 "--paradigm", "full,semi"]) == 0
    assert capsys.readouterr().out == (GOLDEN / "report_table1.md").read_text(encoding="utf-8")
    out = tmp_path / "r.html"
    assert main(["report", "--runs", str(store.root), "--format", "html", "--out",
                 str(out)]) == 0
    assert out.read_text().startswith("<!doctype html>")
    capsys.readouterr()

    def one_line_error(args: list[str], expected: str) -> None:
        assert main(args) == 2
        err = capsys.readouterr().err.strip()
        assert expected in err and "\n" not in err and "Traceback" not in err

    not_built = tmp_path / "folder"
    not_built.mkdir()
    one_line_error(["benchmark", "--data", str(not_built), "--paradigm", "full"],
                   "not a dataset built by tinyset")
    one_line_error(["benchmark", "--data", str(not_built), "--paradigm", "semis"],
                   "unknown paradigm 'semis'")
    one_line_error(["benchmark", "--data", str(not_built), "--paradigm", "semi",
                    "--methods", "99"], "unknown method '99'")
    one_line_error(["report", "--runs", str(store.root), "--format", "pdf"],
                   "unknown format 'pdf'")


def test_seeds_whose_box_regression_collapsed_are_counted(tmp_path: Path) -> None:
    """A seed with over half its boxes under 1 px is named in the status, in every format."""
    s = ResultsStore(tmp_path / "runs")
    for seed, share in ((0, 1.0), (1, 0.5), (2, None)):
        rec = record("2", "full", seed, ap50=0.2)
        if share is not None:
            rec["detections"] = {"count": 10, "sub_pixel": share}
        s.save(RunKey(DATASET, "2", "full", seed), rec)
    frame = report_frame(s, paradigms=["full"])
    row = frame[frame["id"] == "2"].iloc[0]
    assert (row["seeds"], row["collapsed"]) == (3, 1)
    note = "ok (n=3), box regression collapsed on 1 of 3"
    assert note in render(frame, "md") and note in render(frame, "html")
    assert row["status"] == "ok"          # the status itself stays machine-readable
    from benchmark.report import measured
    from benchmark.report_tables import _status  # Tables II–V's status cell

    assert _status(measured(s).iloc[0]) == note
