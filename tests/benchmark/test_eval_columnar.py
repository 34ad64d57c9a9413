"""Columnar detection files (.npz, Parquet) evaluate exactly as the COCO results JSON."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from eval_oracle import random_case

from benchmark.evaluate import evaluate, evaluate_arrays
from benchmark.evaluate.columnar import COLUMNS, results_to_columns, write_npz
from tinyset_builder.errors import TinysetError


def _case(tmp_path: Path) -> tuple[Path, list[dict], Path]:
    gt, dt = random_case(5)
    rng = np.random.default_rng(5)
    for d in dt:  # full float reprs, as a detector's float32 outputs become
        d["bbox"] = [float(np.float32(v + rng.random())) for v in d["bbox"]]
        d["score"] = float(np.float32(d["score"]))
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dt.json").write_text(json.dumps(dt))
    return tmp_path / "gt.json", dt, tmp_path / "dt.json"


def _same(a, b) -> None:
    for name in ("precision", "recall", "scores"):
        assert getattr(a, name).tobytes() == getattr(b, name).tobytes(), name


def test_npz_evaluates_identically_and_is_byte_reproducible(tmp_path: Path) -> None:
    gt, dt, dt_json = _case(tmp_path)
    write_npz(tmp_path / "a.npz", results_to_columns(dt))
    write_npz(tmp_path / "b.npz", results_to_columns(json.loads(dt_json.read_text())))
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    _same(evaluate_arrays(gt, tmp_path / "a.npz"), evaluate_arrays(gt, dt_json))
    with np.load(tmp_path / "a.npz") as z:
        assert sorted(z.files) == sorted(COLUMNS)
        assert z["x"].dtype == np.float64 and z["image_id"].dtype == np.int64


def test_parquet_evaluates_identically(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    gt, dt, dt_json = _case(tmp_path)
    cols = results_to_columns(dt)
    cols["image_id"] = cols["image_id"].astype(np.int32)  # any integer type is read
    pq.write_table(pa.table(cols), tmp_path / "dt.parquet", row_group_size=37)
    _same(evaluate_arrays(gt, tmp_path / "dt.parquet"), evaluate_arrays(gt, dt_json))


def test_columnar_errors_are_one_line(tmp_path: Path) -> None:
    gt, dt, _ = _case(tmp_path)
    cols = results_to_columns(dt)
    bad = {k: v for k, v in cols.items() if k != "score"}
    np.savez(tmp_path / "missing.npz", **bad)
    with pytest.raises(TinysetError, match="lacks column\\(s\\) 'score'"):
        evaluate(gt, tmp_path / "missing.npz")
    np.savez(tmp_path / "floatids.npz", **{**cols, "image_id": cols["image_id"] * 1.0})
    with pytest.raises(TinysetError, match="column 'image_id' must hold integers"):
        evaluate(gt, tmp_path / "floatids.npz")
    np.savez(tmp_path / "short.npz", **{**cols, "w": cols["w"][:-1]})
    with pytest.raises(TinysetError, match="column 'w' must be one-dimensional"):
        evaluate(gt, tmp_path / "short.npz")
    np.savez(tmp_path / "nan.npz", **{**cols, "h": np.where(np.arange(len(dt)) == 4, np.nan,
                                                               cols["h"])})
    with pytest.raises(TinysetError, match=r"detection #4: bbox .* is not finite"):
        evaluate(gt, tmp_path / "nan.npz")
    (tmp_path / "junk.npz").write_text("not a zip")
    with pytest.raises(TinysetError, match=r"not a readable \.npz"):
        evaluate(gt, tmp_path / "junk.npz")


def test_runner_writes_the_columnar_form_beside_predictions_json(tmp_path: Path) -> None:
    from bench_fixture import write_tiny_dataset

    from benchmark.manifest import Method
    from benchmark.runner import plan, run_benchmark

    data = write_tiny_dataset(tmp_path / "tiny", size=64,
                              counts={"train": 2, "val": 1, "test": 3}, objects=4)
    m = Method(id="oracle", name="Oracle", paradigm="full", setting="full", backbone="none",
               schedule="1x", adapter="fake_adapters:OracleAdapter")
    specs = plan([m], data, tmp_path / "runs", command=["tinyset", "benchmark"])
    (rec,) = run_benchmark(specs)
    assert rec["status"] == "ok"
    run_dir = next((tmp_path / "runs").rglob("predictions.json")).parent
    gt = data / "annotations" / "test.json"
    _same(evaluate_arrays(gt, run_dir / "predictions.npz"),
          evaluate_arrays(gt, run_dir / "predictions.json"))
