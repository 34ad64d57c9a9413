"""Pest24 (agriculture, light-trap pest images): Pascal VOC XML with numeric class names.

Provenance: Wang et al., "Pest24: A large-scale very small object data set of agricultural pests
for multi-target detection", Computers and Electronics in Agriculture 175, 2020; data from the
authors. Layout under ``RAW/pest24/`` (as the archive unpacks)::

    Pest24/Annotations/<7-digit id>.xml
    Pest24/JPEGImages/<7-digit id>.jpg
    Pest24/ImageSets/{train,val,test}.txt        (some copies: ImageSets/Main/)

Coordinates: LabelImg corners, ``w = xmax - xmin``; images are 800x600.

Quirks:
- class names are numeric strings that skip values (24 classes, ``1`` .. ``37``): they are kept as
  strings and mapped through the explicit table :data:`CLASS_NAMES` (``"06"`` reads as ``"6"``).
  Which species each number is has not been confirmed, so the numbers are the category names; a
  copy that writes species names instead fails with an unknown-category error naming the file;
- ``difficult=1`` objects are kept with ``iscrowd=1`` (VOC's evaluation ignores them) and their
  ``difficult`` flag is kept on the annotation;
- ``<filename>`` has no extension and ``<path>`` is the annotator's Windows path: the image is
  found from the XML's own name instead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tinyset_builder.coco import CocoDataset
from tinyset_builder.errors import ErrorPolicy
from tinyset_builder.formats.voc_xml import VocObject, format_voc_xml
from tinyset_builder.sources._voc_masks import (
    add_voc_folder,
    layout_hint,
)
from tinyset_builder.sources.base import SourceAssembler, SourceInfo, SynthSummary
from tinyset_builder.synth.canvas import save_image, scene

#: The 24 native class numbers, in ascending order (= the manifest's category order).
CLASS_NAMES = ("1", "2", "3", "5", "6", "7", "8", "10", "11", "12", "13", "14", "15", "16",
               "24", "25", "28", "29", "31", "32", "34", "35", "36", "37")
#: Native spellings → category: each number with and without zero padding.
ALIASES = {f"{int(n):02d}": n for n in CLASS_NAMES} | {f"{int(n):03d}": n for n in CLASS_NAMES}
SPLITS = ("train", "val", "test")


def base_dir(root: Path) -> Path:
    """``root/Pest24`` as the archive unpacks, or ``root`` itself when it was flattened."""
    return root / "Pest24" if (root / "Pest24").is_dir() else root


def convert(root: Path, info: SourceInfo, policy: ErrorPolicy) -> CocoDataset:
    """Read every XML; the ImageSets lists give the split."""
    asm = SourceAssembler(info, root, policy)
    base = base_dir(root)
    if not (base / "Annotations").is_dir():
        policy.fatal(str(base / "Annotations"), f"folder not found; {layout_hint(info)}")
    lists_dir = base / "ImageSets"
    if (lists_dir / "Main").is_dir():
        lists_dir = lists_dir / "Main"
    add_voc_folder(asm, base, "Pest24/" if base != root else "", lists_dir, policy,
                   aliases=ALIASES)
    return asm.finish()


def synthesize(root: Path, seed: int) -> SynthSummary:
    """Five 800x600 trap images (3 train, 1 val, 1 test), dense pests, two difficult each."""
    rng = np.random.default_rng(seed)
    base = root / "Pest24"
    plan = [("0000001", "train"), ("0000004", "train"), ("0000010", "test"),
            ("0000023", "val"), ("0007951", "train")]
    annotations = ignore = 0
    splits: dict[str, int] = {}
    for stem, split in plan:
        pixels, boxes, labels = scene(rng, 800, 600, 40, len(CLASS_NAMES), min_size=5,
                                      max_size=26)
        save_image(base / "JPEGImages" / f"{stem}.jpg", pixels)
        objects = [VocObject(CLASS_NAMES[label], (x, y, x + w, y + h), difficult=k < 2)
                   for k, ((x, y, w, h), label) in enumerate(zip(boxes, labels, strict=True))]
        objects[2] = VocObject(f"{int(objects[2].name):03d}", objects[2].xyxy)  # zero-padded
        xml = base / "Annotations" / f"{stem}.xml"
        xml.parent.mkdir(parents=True, exist_ok=True)
        xml.write_text(format_voc_xml(stem, 800, 600, objects, folder="1pps1", declaration=True,
                                      indent="  "))
        annotations += len(objects)
        ignore += 2
        splits[split] = splits.get(split, 0) + 1
    (base / "ImageSets").mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        stems = [s for s, sp in plan if sp == split]
        (base / "ImageSets" / f"{split}.txt").write_text("".join(f"{s}\n" for s in stems))
    return SynthSummary(images=len(plan), annotations=annotations, ignore=ignore, splits=splits)
