"""Fig. 2 statistics from a built dataset's COCO files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tinyset_builder.errors import TinysetError
from tinyset_builder.io import write_json
from tinyset_builder.stats import compute_stats, write_stats


def _img(i: int, source: str, domain: str) -> dict:
    return {"id": i, "file_name": f"{i}.png", "width": 1024, "height": 1024, "source": source,
            "domain": domain}


def _ann(i: int, image_id: int, side: float, crowd: int = 0) -> dict:
    return {"id": i, "image_id": image_id, "category_id": 1, "bbox": [0, 0, side, side],
            "area": side * side, "iscrowd": crowd}


@pytest.fixture
def built(tmp_path: Path) -> Path:
    cats = [{"id": 1, "name": "s/x", "supercategory": "s"}]
    # train: image 1 (uav) has 10, 20, 30 px objects and an ignore region; image 2 (uav) none.
    write_json(tmp_path / "annotations" / "train.json", {
        "info": {}, "images": [_img(1, "visdrone", "uav"), _img(2, "visdrone", "uav")],
        "annotations": [_ann(1, 1, 10), _ann(2, 1, 20), _ann(3, 1, 30), _ann(4, 1, 500, 1)],
        "categories": cats})
    # test: image ids restart at 1 (as in every split file); 250 objects of 4 px on one image.
    write_json(tmp_path / "annotations" / "test.json", {
        "info": {}, "images": [_img(1, "livecell", "microscopy")],
        "annotations": [_ann(k, 1, 4) for k in range(1, 251)], "categories": cats})
    return tmp_path


def test_numbers(built: Path) -> None:
    s = compute_stats(built)
    o = s["overall"]
    assert (o["images"], o["objects"], o["ignore_regions"]) == (3, 253, 1)
    assert o["mean_scale_px"] == pytest.approx((10 + 20 + 30 + 250 * 4) / 253, abs=0.01)
    assert s["splits"]["train"]["mean_scale_px"] == 20.0
    assert s["splits"]["train"]["mean_objects_per_image"] == 1.5
    assert s["domains"]["images"] == {"microscopy": 1, "uav": 2}
    assert s["domains"]["objects"] == {"microscopy": 250, "uav": 3}
    scale = {b["from"]: b["count"] for b in s["scale_histogram"]}
    assert scale[4] == 250 and scale[8] == 1 and scale[20] == 1 and scale[28] == 1
    assert sum(scale.values()) == 253
    density = {b["from"]: b["count"] for b in s["density_histogram"]}
    assert density[0] == 1 and density[1] == 1 and density[200] == 1   # 0, 3 and 250 objects
    assert s["paper"]["mean_scale_px"] == 20.4


def test_written_files_are_complete_and_reproducible(built: Path, tmp_path: Path) -> None:
    coco_like = tmp_path / "ref.json"
    write_json(coco_like, {"images": [_img(1, "r", "x")], "annotations": [_ann(1, 1, 64)]})
    folder = write_stats(built, {"reference": coco_like})
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["domain_composition.png", "object_density.png", "object_scale.png",
                     "stats.json", "summary.md"]
    for png in folder.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (folder / "summary.md").read_text()
    assert "| reference |" in md and "TinySet-9M (paper" in md and "20.4" in md
    data = json.loads((folder / "stats.json").read_text())
    assert data["comparisons"]["reference"]["mean_scale_px"] == 64.0
    first = {p.name: p.read_bytes() for p in folder.iterdir()}
    write_stats(built, {"reference": coco_like})
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == first


def test_cli_stats(built: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tinyset_builder.cli import main

    assert main(["stats", str(built), "--compare", "bad"]) == 2
    assert "NAME=COCO.json" in capsys.readouterr().err
    with pytest.raises(TinysetError, match="no split file"):
        compute_stats(built / "annotations")
