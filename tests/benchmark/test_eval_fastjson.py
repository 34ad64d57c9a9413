"""The compiled COCO reader gives exactly what ``json`` gives, or declines (then json is used)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from benchmark.evaluate import evaluate, fastjson
from benchmark.evaluate.inputs import load_dt, load_gt


def _floats(rng: np.random.Generator, n: int) -> list[float]:
    vals = list(rng.uniform(-2000, 2000, n))
    vals += [struct.unpack("f", struct.pack("f", v))[0] for v in rng.uniform(0, 1024, n)]
    vals += list(rng.uniform(0, 1, n) * 10.0 ** rng.integers(-30, 30, n))
    vals += [0.1 + 0.2, 1e22, 1e23, 5e-324, 2.0 ** 53, 2.0 ** 53 + 2, -0.0, 0.0, 123456789.125]
    return [float(v) for v in vals]


def test_numbers_convert_exactly_as_float_does(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    vals = _floats(rng, 3000)
    dets = [{"image_id": 1, "category_id": 2, "bbox": [v, v, abs(v), 1], "score": v}
            for v in vals]
    text = json.dumps(dets)
    text = text.replace('"score": 0.5', '"score": 5E-1')  # exponent forms are numbers too
    (tmp_path / "dt.json").write_text(text)
    cols = fastjson.read_results(tmp_path / "dt.json")
    assert cols is not None
    ref = json.loads(text)
    got = cols["score"]
    want = np.array([d["score"] for d in ref])
    assert got.tobytes() == want.tobytes()  # bit-identical, signed zeros included
    assert cols["bbox"].tobytes() == np.array([d["bbox"] for d in ref], float).tobytes()
    assert cols["image_id"].tolist() == [1] * len(ref)


def test_layouts_json_allows_are_read(tmp_path: Path) -> None:
    text = ('[\n {"segmentation": [[1, 2, 3]], "note": "a \\"}\\" ]", "image_id": 1,\n'
            '  "category_id" : 1, "bbox": [ 0 , 0.0 , 1e1 , 10 ], "score": 1, "score": 0.25},'
            '{"image_id":1,"category_id":1,"bbox":[1,1,2,2],"score":0.75,"x":{"y":[{}]}}]')
    (tmp_path / "dt.json").write_text(text)
    cols = fastjson.read_results(tmp_path / "dt.json")
    assert cols is not None
    assert cols["score"].tolist() == [0.25, 0.75]  # duplicate key: the last wins, as json
    assert cols["bbox"].tolist() == [[0, 0, 10, 10], [1, 1, 2, 2]]


@pytest.mark.parametrize("text", [
    '[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": NaN}]',
    '[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": "0.5"}]',
    '[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1], "score": 0.5}]',
    '[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]}]',
    '[{"image_\\u0069d": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}]',
    '{"annotations": []}',
])
def test_anything_unusual_is_declined(tmp_path: Path, text: str) -> None:
    (tmp_path / "dt.json").write_text(text)
    assert fastjson.read_results(tmp_path / "dt.json") is None


def test_escaped_key_falls_back_to_json_with_same_result(tmp_path: Path) -> None:
    gt = {"images": [{"id": 1, "file_name": "a", "width": 9, "height": 9}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5],
                           "area": 25}],  # no iscrowd: 0
          "categories": [{"id": 1, "name": "a"}], "info": {"x": [1, {"y": "}"}]}}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    assert fastjson.read_gt(tmp_path / "gt.json") is not None
    dt = '[{"image_\\u0069d": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.5}]'
    (tmp_path / "dt.json").write_text(dt)
    res = evaluate(tmp_path / "gt.json", tmp_path / "dt.json")
    assert res["AP50"] == pytest.approx(1.0)


def test_fast_and_json_paths_build_the_same_columns(tmp_path: Path) -> None:
    from eval_oracle import random_case

    gt, dt = random_case(6)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dt.json").write_text(json.dumps(dt))
    assert fastjson.read_gt(tmp_path / "gt.json") is not None
    g_fast, g_json = load_gt(tmp_path / "gt.json"), load_gt(gt)
    for f in ("image_ids", "cat_ids", "img", "cat", "box", "area", "crowd", "ann_id"):
        a, b = getattr(g_fast, f), getattr(g_json, f)
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), f
    assert g_fast.image_fields == g_json.image_fields
    d_fast, d_json = load_dt(tmp_path / "dt.json", g_fast), load_dt(dt, g_json)
    for f in ("img", "cat", "box", "score", "area"):
        a, b = getattr(d_fast, f), getattr(d_json, f)
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), f
