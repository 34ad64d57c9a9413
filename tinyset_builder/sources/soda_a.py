"""SODA-A (satellite): large aerial images with oriented 8-point polygons, one JSON per image.

Layout under ``RAW/soda_a/`` (the docs show two layouts; both are read)::

    Images/{train,val,test}/*.jpg
    Annotations/{train,val,test}/*.json        one file per image, same stem
  or
    rawData/{train,val,test}/Images/*.jpg
    rawData/{train,val,test}/Annotations/*.json

Coordinates: ``poly = [x1, y1, ..., x4, y4]`` in absolute pixels; the horizontal box is the
min/max of the points (torchgeo does the same), so a rotated object's box is its enclosing
axis-aligned rectangle.

Quirks:
- ``category_id`` is 0-based and indexes the manifest list; **9 is the ignore class**: kept as
  ``soda_a/ignore`` with ``iscrowd = 1`` (the official script drops it);
- polygons with more than 8 numbers (the official loader skips them) keep their min/max box and
  are counted as ``polygon_over_8_numbers`` (kept, not dropped);
- ``images`` is a dict or a one-element list;
- some annotation files are empty (0 bytes): the official loader skips those images, and so does
  this converter, counting them as ``skipped_empty_annotation_file`` (an image without its
  labels would otherwise look like a background image);
- the image is found by the ``file_name`` in the JSON, else by the annotation file's stem.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tinyset_builder.coco import CocoDataset
from tinyset_builder.errors import ErrorPolicy
from tinyset_builder.formats.soda_poly_json import (
    read_soda_a_json,
    soda_a_document,
    write_soda_a_json,
)
from tinyset_builder.paths import relative_posix
from tinyset_builder.sources.base import SourceAssembler, SourceInfo, SynthSummary, load_info
from tinyset_builder.sources.coco_common import SynthTally, count_size_mismatch, first_existing
from tinyset_builder.synth.canvas import Box, save_image, scene

SPLITS = ("train", "val", "test")
IGNORE_ID = 9
#: (annotation folder, image folder) per split, in the order tried.
LAYOUTS = (("Annotations/{split}", "Images/{split}"),
           ("rawData/{split}/Annotations", "rawData/{split}/Images"))


def convert(root: Path, info: SourceInfo, policy: ErrorPolicy) -> CocoDataset:
    """Read every per-image JSON of every split present, in either layout."""
    asm = SourceAssembler(info, root, policy)
    found = False
    for split in SPLITS:
        for ann_pattern, img_pattern in LAYOUTS:
            ann_dir = root / ann_pattern.format(split=split)
            img_dir = relative_posix(root / img_pattern.format(split=split), root)
            if not ann_dir.is_dir():
                continue
            found = True
            for path in sorted(ann_dir.glob("*.json")):
                _add_file(asm, path, split, img_dir)
    if not found:
        policy.fatal(str(root), "no Annotations/<split>/ or rawData/<split>/Annotations/ folder")
    return asm.finish()


def _add_file(asm: SourceAssembler, path: Path, split: str, img_dir: str) -> None:
    doc = read_soda_a_json(path, asm.policy)
    if doc is None:
        return
    if doc.empty:
        asm.counts["skipped_empty_annotation_file"] += 1
        return
    names = [f"{img_dir}/{path.stem}.jpg"]
    if doc.file_name:
        names.insert(0, f"{img_dir}/{doc.file_name}")
    image = asm.add_image(first_existing(asm.root, names), split=split, location=str(path))
    if image is None:
        asm.counts["dropped_with_bad_image"] += len(doc.polygons)
        return
    count_size_mismatch(asm, image, doc.width, doc.height)
    for poly in doc.polygons:
        if not 0 <= poly.category_id < len(asm.info.categories):
            asm.policy.fail(poly.location, f"unknown category_id {poly.category_id} (SODA-A "
                                           f"uses 0..{len(asm.info.categories) - 1})")
            continue
        if poly.numbers > 8:
            asm.counts["polygon_over_8_numbers"] += 1
        asm.add_box(image, poly.xywh, asm.info.categories[poly.category_id],
                    iscrowd=poly.category_id == IGNORE_ID, location=poly.location)


def oriented(box: Box, turn: int) -> list[float]:
    """A quadrilateral inscribed in ``box`` touching all four sides (its min/max is the box)."""
    x, y, w, h = box
    a, b = max(1, w // 3) * (turn % 2), max(1, h // 3) * (turn % 2)
    return [float(v) for v in (x + a, y, x + w, y + b, x + w - a, y + h, x, y + h - b)]


def synthesize(root: Path, seed: int) -> SynthSummary:
    """Four aerial images (one 2200x1400) with oriented objects, an ignore polygon, a >8-number
    polygon, an ``images`` list variant, and one empty annotation file (its image skipped)."""
    rng = np.random.default_rng(seed)
    names = load_info("soda_a").categories
    categories = list(enumerate(names))
    tally = SynthTally()
    plan = {"train": [(2200, 1400), (800, 600)], "val": [(1600, 1000)], "test": [(1200, 900)]}
    number = 0
    for split, sizes in plan.items():
        for k, (w, h) in enumerate(sizes):
            number += 1
            stem = f"{seed % 100:02d}{number:03d}"
            pixels, boxes, labels = scene(rng, w, h, 60, IGNORE_ID, min_size=4, max_size=24)
            save_image(root / "Images" / split / f"{stem}.jpg", pixels)
            ann = root / "Annotations" / split / f"{stem}.json"
            if split == "train" and k == 1:
                ann.parent.mkdir(parents=True, exist_ok=True)
                ann.write_bytes(b"")  # an empty file, as some releases hold
                continue
            polys: list[tuple[int, list[float]]] = [
                (label, oriented(box, j)) for j, (box, label) in enumerate(
                    zip(boxes, labels, strict=True))]
            polys.append((IGNORE_ID, [10.0, 10.0, 300.0, 10.0, 300.0, 200.0, 10.0, 200.0]))
            # Ten numbers (a pentagon) and a ship crossing the right edge.
            polys.append((4, [50.0, 50.0, 62.0, 48.0, 66.0, 55.0, 60.0, 63.0, 49.0, 58.0]))
            polys.append((4, [w - 8.0, 400.0, w + 6.0, 404.0, w + 4.0, 412.0, w - 10.0, 408.0]))
            write_soda_a_json(ann, soda_a_document(f"{stem}.jpg", w, h, polys, categories,
                                                   image_id=number,
                                                   images_as_list=split == "val"))
            tally.image(split)
            tally.box(n=len(polys) - 1)
            tally.box(ignore=True)
    return tally.summary()
