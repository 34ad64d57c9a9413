"""The COCO export and COCO-results parsing shared by the mmdet and external adapters."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmark"))
from bench_fixture import add_train_quirks, write_tiny_dataset

from adapters.coco_data import detections_from_coco_results, export_coco
from tinyset_builder.errors import TinysetError


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = write_tiny_dataset(tmp_path_factory.mktemp("coco") / "tiny", size=64,
                              counts={"train": 2, "val": 1, "test": 2}, objects=3)
    return add_train_quirks(root, [3.0, 3.0, 0.0, 2.0])


def test_export_boxes_class_agnostic_and_per_category(data: Path, tmp_path: Path) -> None:
    src = data / "annotations" / "train.json"
    coco = json.loads(src.read_text())
    ex = export_coco(src, data, tmp_path / "a.json")
    out = json.loads(ex.path.read_text())
    assert ex.classes == ("object",) and ex.to_dataset == {1: 1}
    assert ex.counts == {"images": 2, "boxes": len(coco["annotations"]) - 2,
                         "ignore_regions": 1, "degenerate_dropped": 1}
    assert {a["category_id"] for a in out["annotations"]} == {1}
    assert out["images"][0]["file_name"] == f"train/{coco['images'][0]['file_name']}"
    assert (data / "images" / out["images"][0]["file_name"]).is_file()
    crowd = next(a for a in out["annotations"] if a["id"] == coco["annotations"][0]["id"])
    assert crowd["iscrowd"] == 1 and crowd["bbox"] == coco["annotations"][0]["bbox"]
    multi = export_coco(src, data, tmp_path / "m.json", class_agnostic=False)
    assert multi.classes == ("synth/car", "synth/person") and multi.to_dataset == {1: 1, 2: 2}


def test_export_points_keeps_point_and_true_box(data: Path, tmp_path: Path) -> None:
    from benchmark.protocols import derive_variant

    clean = write_tiny_dataset(tmp_path / "clean", size=64,
                               counts={"train": 2, "val": 1, "test": 1}, objects=3)
    src = Path(derive_variant(clean, "points-center", seed=0)) / "train.json"
    ex = export_coco(src, clean, tmp_path / "p.json", mode="points")
    out = json.loads(ex.path.read_text())
    orig = {a["id"]: a for a in json.loads(src.read_text())["annotations"]}
    for a in out["annotations"]:
        if a["iscrowd"]:
            continue
        x, y, w, h = orig[a["id"]]["bbox"]
        assert a["true_bbox"] == [x, y, w, h]
        assert a["point"] == pytest.approx([x + w / 2, y + h / 2])
        assert a["bbox"] == pytest.approx([a["point"][0] - 0.5, a["point"][1] - 0.5, 1.0, 1.0])
    with pytest.raises(TinysetError, match="has no point"):
        export_coco(clean / "annotations" / "test.json", clean, tmp_path / "x.json",
                    mode="points")


def test_results_parse_back_per_image(data: Path, tmp_path: Path) -> None:
    test = data / "annotations" / "test.json"
    ids = [i["id"] for i in json.loads(test.read_text())["images"]]
    results = [{"image_id": ids[0], "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.2},
               {"image_id": ids[0], "category_id": 1, "bbox": [5, 5, 2, 2], "score": 0.7}]
    path = tmp_path / "r.bbox.json"
    path.write_text(json.dumps(results))
    dets = detections_from_coco_results(path, test, {1: 2})
    assert [d.image_id for d in dets] == ids
    assert dets[0].xyxy.tolist() == [[5, 5, 7, 7], [1, 2, 4, 6]]
    assert dets[0].labels.tolist() == [2, 2] and len(dets[1].scores) == 0
    with pytest.raises(TinysetError, match="names image 999"):
        detections_from_coco_results([{**results[0], "image_id": 999}], test, {1: 2})
    with pytest.raises(TinysetError, match="category_id 5, never exported"):
        detections_from_coco_results([{**results[0], "category_id": 5}], test, {1: 2})
    with pytest.raises(TinysetError, match="result 0 is not a COCO detection"):
        detections_from_coco_results([{"image_id": ids[0]}], test, {1: 2})
