"""Genuine annotation files (../shared/realsamples) through the JSON-family converters.

The samples hold annotations only: each test copies them into a native RAW layout under
``tmp_path``, adds blank images of the size the annotation (or the source's documentation) gives,
converts, and compares with counts taken from the file itself by plain ``json``/text handling.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from tinyset_builder.errors import ErrorPolicy, SourceError
from tinyset_builder.sources import convert_source, get_source
from tinyset_builder.sources.aitod_v2 import read_class_mapping
from tinyset_builder.sources.base import load_info


def _blank(path: Path, width: int, height: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), (90, 90, 90)).save(path)


def test_coco2017_val_sample(realsamples: Path, tmp_path: Path) -> None:
    src = realsamples / "COCO2017" / "annotations" / "instances_val2017.json"
    root = tmp_path / "raw" / "coco"
    (root / "annotations").mkdir(parents=True)
    shutil.copy(src, root / "annotations" / "instances_val2017.json")
    raw = json.loads(src.read_text())
    for im in raw["images"]:
        _blank(root / "val2017" / im["file_name"], im["width"], im["height"])
    conv = convert_source("coco", tmp_path / "raw")
    ds = conv.dataset
    assert conv.skipped == {}
    assert len(ds.images) == len(raw["images"]) == 2
    assert len(ds.annotations) == len(raw["annotations"]) == 10
    assert sum(a.iscrowd for a in ds.annotations) == sum(a["iscrowd"] for a in raw["annotations"])
    assert {i.split for i in ds.images} == {"val"}
    names = {c["id"]: c["name"] for c in raw["categories"]}
    assert len(names) == 80 and max(names) == 90
    cats = {c.id: c.name for c in ds.categories}
    assert Counter(cats[a.category_id] for a in ds.annotations) == Counter(
        f"coco/{names[a['category_id']]}" for a in raw["annotations"])
    # Boxes stay exactly as annotated (all lie inside their images), the 5.4x6.47 px person too.
    assert sorted(a.bbox for a in ds.annotations) == sorted(tuple(a["bbox"])
                                                            for a in raw["annotations"])
    assert conv.counts == {}


def test_hrsid_modified_sample(realsamples: Path, tmp_path: Path) -> None:
    src = realsamples / "HRSID" / "modified-HRSID" / "Annotations" / "inshore" / "inshore_test.json"
    root = tmp_path / "raw" / "hrsid"
    (root / "HRSID_JPG" / "annotations").mkdir(parents=True)
    shutil.copy(src, root / "HRSID_JPG" / "annotations" / "test2017.json")
    raw = json.loads(src.read_text())
    assert raw["categories"][0]["id"] == 0  # the id-0 quirk the converter maps by name
    for im in raw["images"]:
        _blank(root / "HRSID_JPG" / "JPEGImages" / im["file_name"], im["width"], im["height"])
    ds = convert_source("hrsid", tmp_path / "raw").dataset
    assert len(ds.images) == len(raw["images"]) == 3
    assert len(ds.annotations) == len(raw["annotations"]) == 16
    assert [c.name for c in ds.categories] == ["hrsid/ship"]
    assert {i.split for i in ds.images} == {"test"}
    per_file = Counter(next(i["file_name"] for i in raw["images"] if i["id"] == a["image_id"])
                       for a in raw["annotations"])
    by_id = {i.id: i.file_name.rsplit("/", 1)[1] for i in ds.images}
    assert Counter(by_id[a.image_id] for a in ds.annotations) == per_file
    assert sum(a.bbox[0] == 0.0 for a in ds.annotations) == sum(
        a["bbox"][0] == 0 for a in raw["annotations"]) == 2


def _crowdhuman_root(realsamples: Path, tmp_path: Path) -> tuple[Path, str, list[str]]:
    src = realsamples / "CrowdHuman"
    root = tmp_path / "raw" / "crowdhuman"
    root.mkdir(parents=True)
    shutil.copy(src / "test_annotation_train.odgt", root / "annotation_train.odgt")
    sizes = json.loads((src / "id_hw_train.json").read_text())  # mmdet's (height, width) cache
    for image_id, (h, w) in sizes.items():
        _blank(root / "Images" / f"{image_id}.jpg", w, h)
    text = (src / "test_annotation_train.odgt").read_text()
    return root, text, list(sizes)


def test_crowdhuman_sample_heads(realsamples: Path, tmp_path: Path) -> None:
    _root, text, ids = _crowdhuman_root(realsamples, tmp_path)
    assert ids == ["283554,35288000868e92d4"]  # an ID with a comma
    tags = re.findall(r'"tag": "(\w+)"', text)
    ds = convert_source("crowdhuman", tmp_path / "raw").dataset
    assert len(ds.images) == text.count('"ID"') == 1
    assert len(ds.annotations) == len(tags) == 7
    cats = {c.id: c.name for c in ds.categories}
    assert Counter(cats[a.category_id] for a in ds.annotations) == Counter(
        "crowdhuman/head" if t == "person" else "crowdhuman/mask" for t in tags)
    assert sum(a.iscrowd for a in ds.annotations) == text.count('"ignore": 1') == 1
    assert ds.images[0].file_name == f"Images/{ids[0]}.jpg"


def test_crowdhuman_sample_full_bodies_are_clipped(realsamples: Path, tmp_path: Path) -> None:
    root, text, _ = _crowdhuman_root(realsamples, tmp_path)
    record = json.loads(text)
    h, w = 1356, 2048
    outside = sum(x < 0 or y < 0 or x + bw > w or y + bh > h
                  for x, y, bw, bh in (g["fbox"] for g in record["gtboxes"]))
    info = dataclasses.replace(load_info("crowdhuman"), build={"box": "fbox"})
    ds = get_source("crowdhuman").convert(root, info, ErrorPolicy())
    assert ds.info["counts"]["clipped_to_image"] == outside >= 1
    assert all(a.bbox[1] + a.bbox[3] <= h for a in ds.annotations)
    # box_id 1's full body [792, 24, 723, 2017] ends at y = 2041; clipped to the image bottom.
    assert (792.0, 24.0, 723.0, float(h - 24)) in {a.bbox for a in ds.annotations}


def _tile_names(text: str) -> list[str]:
    return re.findall(r"'(\d+__\d+_\d+\.png)'", text)


def test_aitod_xview_metadata(realsamples: Path, tmp_path: Path) -> None:
    """The official val tile list is the split authority for xView tiles, and the official class
    mapping labels them; AI-TOD-v2 annotation JSON is not public, so the test writes one."""
    src = realsamples / "AI-TOD-v2" / "aitodtoolkit" / "aitod_xview"
    root = tmp_path / "raw" / "aitod_v2"
    shutil.copytree(src, root / "aitodtoolkit" / "aitod_xview")
    tiles = _tile_names((src / "aitod_xview_val.txt").read_text())
    lines = (src / "converted_class.txt").read_text().splitlines()
    pairs = [line.rsplit(":", 1) for line in lines]
    kept = [(x, t) for x, t in pairs if t != "None"]
    assert len(tiles) == 20 and len(lines) == 62

    # The class mapping as the converter reads it, against the plain-text count.
    mapping = read_class_mapping(src / "converted_class.txt", ErrorPolicy())
    assert len(mapping) == len({x for x, _ in pairs}) == 61  # "other" appears twice
    assert {t for t in mapping.values() if t} == {t for _, t in kept} == {
        "airplane", "vehicle", "ship", "storage-tank"}

    # A val annotation file over the 20 listed tiles, 2 non-xView images and 1 unlisted tile;
    # each tile's objects are labelled by the official mapping, like the toolkit's output.
    names = load_info("aitod_v2").categories
    ids = {n: i for i, n in enumerate(names, start=1)}
    stray = "99999__0_0.png"
    files = [*tiles, "0000001.png", "0000002.png", stray]
    images = [{"id": k, "file_name": f, "width": 800, "height": 800}
              for k, f in enumerate(files, start=1)]
    anns = []
    for k in range(1, len(files) + 1):
        for j in range(3):
            _xview, target = kept[(3 * k + j) % len(kept)]
            anns.append({"id": len(anns) + 1, "image_id": k, "category_id": ids[target],
                         "bbox": [10.0 + 40 * j, 20.0, 6.0, 5.0], "area": 30.0, "iscrowd": 0})
    doc = {"images": images, "annotations": anns,
           "categories": [{"id": i, "name": n} for n, i in ids.items()]}
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "aitodv2_val.json").write_text(json.dumps(doc))
    missing = tiles[-3:]  # three tiles not regenerated from xView
    for f in files:
        if f not in missing:
            _blank(root / "images" / "val" / f, 800, 800)

    with pytest.raises(SourceError) as e:
        convert_source("aitod_v2", tmp_path / "raw")
    assert "aitodv2_val.json:images[17]" in str(e.value) and missing[0] in str(e.value)
    assert "generate_aitod_imgs.py" in str(e.value)

    conv = convert_source("aitod_v2", tmp_path / "raw", on_error="skip")
    ds = conv.dataset
    assert len(ds.images) == len(files) - len(missing) - 1 == 19
    assert conv.counts["xview_tiles"] == len(tiles) - len(missing) == 17
    assert sum(conv.skipped.values()) == len(missing) + 1
    assert any("no official list" in r and stray in conv.examples[r] for r in conv.skipped)
    assert conv.counts["dropped_with_bad_image"] == 3 * (len(missing) + 1)
    assert len(ds.annotations) == 3 * 19
    assert "xview_category_outside_mapping" not in conv.counts
    assert {i.split for i in ds.images} == {"val"}
