"""DOTA export of a built split and of its points-center variant, read back."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmark"))
from bench_fixture import write_tiny_dataset

from adapters.dota_export import dota_class, export_dota, main, read_dota


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = write_tiny_dataset(tmp_path_factory.mktemp("dota") / "ds", size=64, objects=4,
                              counts={"train": 2, "val": 1})
    coco = json.loads((root / "annotations" / "train.json").read_text())
    coco["annotations"][0]["iscrowd"] = 1
    (root / "annotations" / "train.json").write_text(json.dumps(coco))
    return root


def _boxes(coco: dict) -> dict[str, list[tuple[list[float], int]]]:
    names = {i["id"]: Path(i["file_name"]).stem for i in coco["images"]}
    out: dict[str, list[tuple[list[float], int]]] = {}
    for a in coco["annotations"]:
        out.setdefault(names[a["image_id"]], []).append((a["bbox"], 2 if a.get("iscrowd") else 0))
    return out


def test_polygons_equal_the_boxes(built: Path, tmp_path: Path) -> None:
    coco = json.loads((built / "annotations" / "train.json").read_text())
    res = export_dota(built / "annotations" / "train.json", built, tmp_path / "dota")
    back = read_dota(tmp_path / "dota" / "labelTxt")
    want = _boxes(coco)
    assert set(back) == {Path(i["file_name"]).stem for i in coco["images"]}
    assert res.images == 2 and res.ignored == 1 and res.objects == len(coco["annotations"]) - 1
    for stem, rows in back.items():
        assert len(rows) == len(want[stem])
        for (poly, cls, diff), (bbox, want_diff) in zip(rows, want[stem], strict=True):
            x, y, w, h = bbox
            xs, ys = poly[0::2], poly[1::2]
            # four corners, clockwise from the top-left, exactly the box (2-decimal text)
            np.testing.assert_allclose(list(zip(xs, ys, strict=True)),
                                       [(x, y), (x + w, y), (x + w, y + h), (x, y + h)],
                                       atol=0.005)
            assert cls == "object" and diff == want_diff
    for stem in back:
        img = next((tmp_path / "dota" / "images").glob(f"{stem}.*"))
        assert img.read_bytes() == next((built / "images" / "train").glob(f"{stem}.*")
                                        ).read_bytes()


def test_points_variant_centres_polygons_on_points(built: Path, tmp_path: Path) -> None:
    coco = json.loads((built / "annotations" / "train.json").read_text())
    for a in coco["annotations"]:
        x, y, w, h = a["bbox"]
        a["point"] = [x + w / 2 + 1.0, y + h / 2]  # a jittered point, 1 px right of the centre
    src = tmp_path / "points.json"
    src.write_text(json.dumps(coco))
    export_dota(src, built, tmp_path / "dota", mode="points", class_agnostic=False)
    back = read_dota(tmp_path / "dota" / "labelTxt")
    rows = [r for stem in sorted(back) for r in back[stem]]
    anns = [a for stem in sorted(back) for a in coco["annotations"]
            if Path(next(i["file_name"] for i in coco["images"] if i["id"] == a["image_id"]))
            .stem == stem]
    for (poly, cls, diff), a in zip(rows, anns, strict=True):
        cx, cy = np.mean(poly[0::2]), np.mean(poly[1::2])
        x, y, w, h = a["bbox"]
        if diff == 0:
            assert (cx, cy) == pytest.approx(tuple(a["point"]), abs=0.01)
        else:  # ignore regions keep their box
            assert (cx, cy) == pytest.approx((x + w / 2, y + h / 2), abs=0.01)
        assert cls in {"synth__car", "synth__person"}


def test_cli_and_errors(built: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main([str(built / "annotations" / "val.json"), str(built), str(tmp_path / "o")]) == 0
    assert "1 images" in capsys.readouterr().out
    bad = json.loads((built / "annotations" / "val.json").read_text())
    bad["annotations"][0]["bbox"][2] = 0
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    assert main([str(tmp_path / "bad.json"), str(built), str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err
    assert "no area" in err and "Traceback" not in err
    assert dota_class("aitod_v2/storage tank") == "aitod_v2__storage-tank"
