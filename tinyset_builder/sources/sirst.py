"""SIRST (infrared small targets): mask PNGs (boxes from components) and VOC-like XML.

Provenance: Yimian Dai et al., "Asymmetric Contextual Modulation for Infrared Small Target
Detection", WACV 2021 (v1, NUAA-SIRST, github ``YimianDai/sirst``, 427 images) and the SIRST-V2
release (github ``YimianDai/open-sirst-v2``, about 1,024 images). Both layouts are read; which one
``RAW/sirst/`` (or a clone folder inside it) holds is detected from its folders::

    v1 (default; the "SIRST" of the small-target literature):
      images/Misc_<n>.png
      masks/Misc_<n>_pixels0.png, masks/Misc_<n>.xml
      idx_427/{train,val,test,trainval,trainvaltest}.txt
    v2:
      images/{targets,backgrounds}/<name>.png
      annotations/masks/<name>_pixels0.png, annotations/bboxes/<name>.xml
      splits/{train_full,val_full,test_full,...}.txt

Boxes: from the masks whenever an image has one (every 8-connected component with >= 2 pixels is
one ``Target``; see :mod:`tinyset_builder.formats.masks`); all ``<name>_pixels<k>.png`` of an image
are merged. Without a mask, v2's ``bboxes`` XML is used, read in the *inclusive* convention
(``71..73`` is a 3-pixel target: the boxes are tight mask extents).

Quirks:
- v1's XML boxes are unreliable (Misc_1's single box spans two separate targets), so they are
  used only for an image without any mask, counted as ``boxes_from_v1_xml``;
- v2's XML writes ``<filename>`` without an extension and ``<depth>1</depth>``; images are found
  by the XML's own name instead;
- v2 background images are negatives; their XML may hold a ``Target`` with ``<pixels>`` but no
  ``<bndbox>`` (counted as ``dropped_object_without_bndbox``);
- ``trainval`` lists (and v2's v1/v2 mixing lists) are unions of the others and are not read.
"""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Literal

import numpy as np

from tinyset_builder.coco import CocoDataset
from tinyset_builder.errors import ErrorPolicy
from tinyset_builder.formats.masks import paint_binary_mask, place_speck
from tinyset_builder.formats.voc_xml import VocObject, format_voc_xml, read_voc_xml
from tinyset_builder.paths import relative_posix
from tinyset_builder.sources._voc_masks import (
    add_mask_image,
    add_voc_annotation,
    find_base,
    layout_hint,
    read_split_lists,
)
from tinyset_builder.sources.base import SourceAssembler, SourceInfo, SynthSummary
from tinyset_builder.synth.canvas import sample_boxes, save_image, textured_background

Layout = Literal["v1", "v2"]
CATEGORY = "Target"
V1_LISTS = {"train": "train.txt", "val": "val.txt", "test": "test.txt"}
V2_LISTS = {"train": "train_full.txt", "val": "val_full.txt", "test": "test_full.txt"}
V2_IMAGE_DIRS = ("targets", "backgrounds")


def detect_layout(root: Path) -> Layout | None:
    """``"v2"`` if ``annotations/`` or ``images/targets`` exist, ``"v1"`` if ``images/`` does."""
    if (root / "annotations").is_dir() or (root / "images" / "targets").is_dir():
        return "v2"
    if (root / "images").is_dir():
        return "v1"
    return None


def convert(root: Path, info: SourceInfo, policy: ErrorPolicy) -> CocoDataset:
    """Read the layout present: masks first, XML for images without a mask."""
    asm = SourceAssembler(info, root, policy)
    base = find_base(root, "images", "annotations")  # a clone may sit in its own folder
    layout = detect_layout(base)
    if layout is None:
        policy.fatal(str(base / "images"), f"folder not found; {layout_hint(info)}")
    if layout == "v1":
        images = sorted((base / "images").glob("*.png"))
        mask_dir = xml_dir = base / "masks"
        idx = base / "idx_427"
        if not idx.is_dir():  # forks ship idx_320 or similar
            idx = next(iter(sorted(base.glob("idx_*"))), idx)
        lists = read_split_lists({s: idx / f for s, f in V1_LISTS.items()}, policy)
    else:
        images = sorted(p for d in V2_IMAGE_DIRS for p in (base / "images" / d).glob("*.png"))
        mask_dir, xml_dir = base / "annotations" / "masks", base / "annotations" / "bboxes"
        lists = read_split_lists({s: base / "splits" / f for s, f in V2_LISTS.items()}, policy)
    for image in images:
        split = lists[image.stem][0] if image.stem in lists else None
        rel = relative_posix(image, root)
        masks = sorted(mask_dir.glob(f"{glob.escape(image.stem)}_pixels*.png"))
        if masks:
            add_mask_image(asm, rel, masks, CATEGORY, split=split, location=str(image))
            continue
        xml = xml_dir / f"{image.stem}.xml"
        if not xml.is_file():
            policy.fail(str(image), f"no mask {mask_dir.name}/{image.stem}_pixels0.png and no "
                                    f"{xml_dir.name}/{image.stem}.xml")
            continue
        ann = read_voc_xml(xml, policy)
        if ann is None:
            continue
        if layout == "v1":
            asm.counts["boxes_from_v1_xml"] += sum(o.xyxy is not None for o in ann.objects)
        add_voc_annotation(asm, ann, rel, split=split, inclusive=True)
    return asm.finish()


def synthesize(root: Path, seed: int, layout: Layout = "v1") -> SynthSummary:
    """Five IR frames (320x240 to 640x512; v2 adds a 1918x1080 background) with masks.

    Each v1 XML holds one box spanning all targets, as the real Misc_1 does, which the converter
    must ignore in favour of the mask; one mask holds a single-pixel speck (dropped, counted).
    v2 writes the same targets as masks for three images and as inclusive XML boxes for the
    others, plus one background negative whose object has no ``<bndbox>``.
    """
    rng = np.random.default_rng(seed)
    plan = [("Misc_1", 320, 240, "train"), ("Misc_2", 256, 256, "train"),
            ("Misc_3", 640, 512, "val"), ("Misc_4", 320, 240, "test"),
            ("Misc_5", 480, 360, "train")]
    annotations = 0
    splits: dict[str, int] = {}
    lists: dict[str, list[str]] = {}
    for k, (stem, w, h, split) in enumerate(plan):
        pixels = textured_background(rng, w, h).mean(axis=2).astype(np.uint8)
        boxes = sample_boxes(rng, w, h, 12, min_size=2, max_size=9, margin=2)
        ellipses = [bool(i % 2) for i in range(len(boxes))]
        mask = paint_binary_mask(w, h, boxes, ellipses)
        pixels[mask > 0] = 240
        if k == 1:  # a stray single pixel, away from every target: dropped and counted
            place_speck(mask)
        if layout == "v1":
            image = root / "images" / f"{stem}.png"
            save_image(root / "masks" / f"{stem}_pixels0.png", mask)
            xs = [b[0] for b in boxes] + [b[0] + b[2] for b in boxes]
            ys = [b[1] for b in boxes] + [b[1] + b[3] for b in boxes]
            xml = format_voc_xml(f"{stem}.png", w, h, [VocObject("Target", (
                min(xs), min(ys), max(xs), max(ys)))], folder="images", indent="    ")
            (root / "masks" / f"{stem}.xml").write_text(xml)
        else:
            image = root / "images" / "targets" / f"{stem}.png"
            if k < 3:
                save_image(root / "annotations" / "masks" / f"{stem}_pixels0.png", mask)
            objects = [VocObject("Target", (x, y, x + bw - 1, y + bh - 1))
                       for x, y, bw, bh in boxes]
            xml_path = root / "annotations" / "bboxes" / f"{stem}.xml"
            xml_path.parent.mkdir(parents=True, exist_ok=True)
            xml_path.write_text(format_voc_xml(stem, w, h, objects, depth=1, indent="  "))
        save_image(image, pixels)
        annotations += len(boxes)
        splits[split] = splits.get(split, 0) + 1
        lists.setdefault(split, []).append(stem)
    if layout == "v2":
        stem = "20210725-S1-1121"
        pixels = textured_background(rng, 1918, 1080).mean(axis=2).astype(np.uint8)
        save_image(root / "images" / "backgrounds" / f"{stem}.png", pixels)
        (root / "annotations" / "bboxes" / f"{stem}.xml").write_text(format_voc_xml(
            f"{stem}.png", 1918, 1080, [VocObject("Target", None)], folder="backgrounds"))
        splits["train"] += 1
        lists["train"].append(stem)
    names = V1_LISTS if layout == "v1" else V2_LISTS
    folder = root / ("idx_427" if layout == "v1" else "splits")
    folder.mkdir(parents=True, exist_ok=True)
    for split, stems in lists.items():
        (folder / names[split]).write_text("".join(f"{s}\n" for s in stems))
    trainval = lists["train"] + lists["val"]
    (folder / ("trainval.txt" if layout == "v1" else "trainval_full.txt")).write_text(
        "".join(f"{s}\n" for s in trainval))
    return SynthSummary(images=sum(splits.values()), annotations=annotations, splits=splits)
