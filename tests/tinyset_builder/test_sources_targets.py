"""The transfer targets (DIOR, DOTA-v2.0, TinyPerson): kept out of TinySet by default, and
their format quirks, each checked on a synthetic native copy."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

from tinyset_builder.sources import (
    SOURCES,
    TARGETS,
    convert_source,
    get_source,
    parse_source_names,
)


def test_targets_are_never_in_the_default_source_set() -> None:
    assert set(parse_source_names(None)) == set(SOURCES)
    assert set(parse_source_names("all")) == set(SOURCES)
    assert parse_source_names("dior,hrsid") == ["dior", "hrsid"]


def test_dota_boxes_are_polygon_extents_difficult_is_ignore_val_is_test(tmp_path: Path) -> None:
    root = tmp_path / "dota_v2"
    get_source("dota_v2").synthesize(root, seed=1)
    label = root / "train" / "labelTxt-v2.0" / "P0017.txt"
    # One rotated object written by hand: corners (10,20) (40,25) (35,60) (5,50).
    label.write_text("imagesource:GoogleEarth\ngsd:0.1\n"
                     "10 20 40 25 35 60 5 50 small-vehicle 0\n"
                     "100 100 130 100 130 120 100 120 ship 1\n")
    ds = convert_source("dota_v2", tmp_path).dataset
    img = next(i for i in ds.images if i.original_file.endswith("P0017.png"))
    anns = [a for a in ds.annotations if a.image_id == img.id]
    assert [a.bbox for a in anns] == [(5.0, 20.0, 35.0, 40.0), (100.0, 100.0, 30.0, 20.0)]
    assert [a.iscrowd for a in anns] == [0, 1]
    assert Counter(i.split for i in ds.images) == {"train": 3, "val": 1, "test": 2}
    held = next(i for i in ds.images if i.split == "val")
    assert held.original_file == "train/images/P0019.png"  # official train, held out by hash


def test_dota_bad_line_is_a_counted_skip(tmp_path: Path) -> None:
    root = tmp_path / "dota_v2"
    get_source("dota_v2").synthesize(root, seed=1)
    label = root / "val" / "labelTxt" / "P9001.txt"
    label.write_text(label.read_text() + "1 2 3 4 ship\n")
    conv = convert_source("dota_v2", tmp_path, on_error="skip")
    assert sum(conv.skipped.values()) == 1


def test_dior_reads_horizontal_boxes_only_and_the_flat_older_layout(tmp_path: Path) -> None:
    root = tmp_path / "dior"
    summary = get_source("dior").synthesize(root, seed=2)
    ds = convert_source("dior", tmp_path).dataset
    assert len(ds.annotations) == summary.annotations  # the oriented folder was not read
    names = {c.id: c.name for c in ds.categories}
    assert "dior/Expressway-Service-area" in {names[a.category_id] for a in ds.annotations}
    # Older copies: every XML directly under Annotations/.
    shutil.rmtree(root / "Annotations" / "Oriented Bounding Boxes")
    hbb = root / "Annotations" / "Horizontal Bounding Boxes"
    for xml in hbb.glob("*.xml"):
        xml.rename(root / "Annotations" / xml.name)
    hbb.rmdir()
    again = convert_source("dior", tmp_path).dataset
    assert [a.bbox for a in again.annotations] == [a.bbox for a in ds.annotations]


def test_tinyperson_uncertain_and_ignore_are_ignore_regions(tmp_path: Path) -> None:
    root = tmp_path / "tinyperson"
    summary = get_source("tinyperson").synthesize(root, seed=4)
    ds = convert_source("tinyperson", tmp_path).dataset
    crowd = [a for a in ds.annotations if a.iscrowd]
    assert len(crowd) == summary.ignore == 2 * summary.images
    assert sum(bool(a.extra.get("uncertain")) for a in crowd) == summary.images
    # A flattened copy (no tiny_set/ folder) converts alike.
    flat = tmp_path / "flat" / "tinyperson"
    shutil.copytree(root / "tiny_set", flat)
    again = convert_source("tinyperson", tmp_path / "flat").dataset
    assert [a.bbox for a in again.annotations] == [a.bbox for a in ds.annotations]
    doc = json.loads((root / "tiny_set" / "annotations" / "tiny_set_test.json").read_text())
    assert {c["name"] for c in doc["categories"]} == {"sea_person", "earth_person"}


def test_a_default_build_leaves_targets_out(tmp_path: Path) -> None:
    from tinyset_builder.build import build

    for name in TARGETS:
        get_source(name).synthesize(tmp_path / "raw" / name, seed=0)
    get_source("sirst").synthesize(tmp_path / "raw" / "sirst", seed=0)
    record = build(tmp_path / "raw", tmp_path / "out", stats=False).record
    assert list(record["sources"]) == ["sirst"]
