"""Real annotation files (``../shared/realsamples``) convert without error, with their own counts.

The samples hold annotations but no images: each test copies the files into a RAW tree laid out as
the source's download unpacks, adds blank images of the right size, converts, and compares with
counts taken from the files directly (plain string splitting, not the toolkit's parsers).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from tinyset_builder.coco import CocoDataset
from tinyset_builder.sources import convert_source
from tinyset_builder.synth.canvas import save_image


def blank_bytes(tmp_path: Path, size: tuple[int, int]) -> bytes:
    w, h = size
    return save_image(tmp_path / f"blank_{w}x{h}.jpg",
                      np.full((h, w, 3), 90, dtype=np.uint8)).read_bytes()


def place(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def lines(path: Path) -> list[str]:
    return [t.strip() for t in path.read_text().splitlines() if t.strip()]


def category_histogram(ds: CocoDataset) -> Counter[str]:
    names = {c.id: c.name for c in ds.categories}
    return Counter(names[a.category_id] for a in ds.annotations)


def test_visdrone_val_annotation(realsamples: Path, tmp_path: Path) -> None:
    sample = (realsamples / "VisDrone2019-DET" / "VisDrone2019-DET-val" / "annotations" /
              "0000001_02999_d_0000005.txt")
    root = tmp_path / "raw" / "visdrone" / "VisDrone2019-DET-val"
    place(root / "annotations" / sample.name, sample.read_bytes())
    # A 1920x1080 frame: the truncated box 447,1054,27,26 ends exactly at its bottom edge.
    place(root / "images" / f"{sample.stem}.jpg", blank_bytes(tmp_path, (1920, 1080)))
    conv = convert_source("visdrone", tmp_path / "raw")
    rows = [t.rstrip(",").split(",") for t in lines(sample)]
    ignored = sum(r[5] in ("0", "11") or r[4] == "0" for r in rows)
    assert len(conv.dataset.images) == 1 and conv.skipped == {}
    assert len(conv.dataset.annotations) == len(rows) == 128
    assert sum(a.iscrowd for a in conv.dataset.annotations) == ignored
    categories = ["ignored-region", "pedestrian", "people", "bicycle", "car", "van", "truck",
                  "tricycle", "awning-tricycle", "bus", "motor", "others"]
    assert category_histogram(conv.dataset) == Counter(f"visdrone/{categories[int(r[5])]}"
                                                       for r in rows)
    assert [tuple(a.bbox) for a in conv.dataset.annotations] == [
        tuple(float(v) for v in r[:4]) for r in rows]  # nothing clipped, order kept
    assert conv.dataset.images[0].split == "val"


def test_ccpd_split_lists(realsamples: Path, tmp_path: Path) -> None:
    tilt_list = realsamples / "CCPD" / "split" / "ccpd_tilt.txt"
    val_list = realsamples / "CCPD" / "test_suite" / "val_for_test.txt"
    base = tmp_path / "raw" / "license_plate" / "CCPD2019"
    place(base / "splits" / "ccpd_tilt.txt", tilt_list.read_bytes())
    place(base / "splits" / "val.txt", val_list.read_bytes())  # same line format as splits/val.txt
    image = blank_bytes(tmp_path, (720, 1160))  # CCPD's documented frame size
    names = lines(tilt_list) + lines(val_list)
    for rel in names:
        place(base / rel, image)
    conv = convert_source("license_plate", tmp_path / "raw")
    ds = conv.dataset
    assert conv.skipped == {} and len(ds.images) == len(names) == 36
    assert len(ds.annotations) == 36
    assert Counter(i.split for i in ds.images) == {"val": len(lines(val_list)),
                                                   "test": len(lines(tilt_list))}
    # Independently: the box is the extent of the four "x&y" vertices of field 4.
    corners = re.compile(r"-(\d+)&(\d+)_(\d+)&(\d+)_(\d+)&(\d+)_(\d+)&(\d+)-")
    by_file = {i.id: i.file_name for i in ds.images}
    for a in ds.annotations:
        match = corners.search(by_file[a.image_id])
        assert match is not None
        xs, ys = [int(v) for v in match.groups()[0::2]], [int(v) for v in match.groups()[1::2]]
        assert a.bbox == (min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys))


def test_dfl_roboflow_fork_label(realsamples: Path, tmp_path: Path) -> None:
    export = realsamples / "DFL-Bundesliga" / "football-players-detection-1"
    (label,) = (export / "test" / "labels").glob("*.txt")
    root = tmp_path / "raw" / "dfl"
    place(root / "data.yaml", (export / "data.yaml").read_bytes())
    place(root / "test" / "labels" / label.name, label.read_bytes())
    # The fork was exported at 1280x1280 ("stretch"); sizes come from the image header.
    place(root / "test" / "images" / f"{label.stem}.jpg", blank_bytes(tmp_path, (1280, 1280)))
    conv = convert_source("dfl", tmp_path / "raw")
    rows = [t.split() for t in lines(label)]
    # The fork's data.yaml order: 0 football (= ball), 1 goalkeeper, 2 player, 3 referee.
    fork_names = ["ball", "goalkeeper", "player", "referee"]
    assert conv.skipped == {} and len(conv.dataset.annotations) == len(rows) == 22
    assert category_histogram(conv.dataset) == Counter(f"dfl/{fork_names[int(r[0])]}"
                                                       for r in rows)
    (ball,) = [a for a in conv.dataset.annotations
               if conv.dataset.categories[a.category_id - 1].name == "dfl/ball"]
    assert ball.bbox[2:] == pytest.approx((0.005859375 * 1280, 0.012109375 * 1280))
    assert conv.dataset.images[0].split == "test"


def test_visalgae_train_labels(realsamples: Path, tmp_path: Path) -> None:
    labels = sorted((realsamples / "VisAlgae2023" / "dataset" / "train" / "labels").glob("*.txt"))
    root = tmp_path / "raw" / "visalgae" / "train"
    image = blank_bytes(tmp_path, (1904, 608))  # the size the labels back-compute to
    for label in labels:
        place(root / "labels" / label.name, label.read_bytes())
        place(root / "images" / f"{label.stem}.jpg", image)
    conv = convert_source("visalgae", tmp_path / "raw")
    rows = [t.split() for label in labels for t in lines(label)]
    species = ["Platymonas", "Chlorella", "Dunaliella salina", "Effrenium", "Porphyridium",
               "Haematococcus"]
    assert conv.skipped == {} and len(conv.dataset.images) == len(labels) == 2
    assert len(conv.dataset.annotations) == len(rows) == 6
    assert category_histogram(conv.dataset) == Counter(f"visalgae/{species[int(r[0])]}"
                                                       for r in rows)
    # Chlorella, the tiny one: about 0.0084 x 0.0247 of 1904 x 608, i.e. ~16 x 15 px.
    small = min(a.bbox[2] * a.bbox[3] for a in conv.dataset.annotations)
    assert small == pytest.approx(0.008403361344537815 * 1904 * 0.024671052631578948 * 608)
