"""DIOR (satellite; a transfer target of Table III, not a TinySet source): Pascal VOC XML.

Provenance: Li, Wan, Cheng, Meng and Han, "Object detection in optical remote sensing images: A
survey and a new benchmark", ISPRS J. Photogramm. Remote Sens. 159, 2020 — 23,463 Google Earth
images of 800x800, 20 classes, 192,472 instances, official train/val/test lists. Layout under
``RAW/dior/`` (as ``JPEGImages-trainval.zip``, ``JPEGImages-test.zip``, ``Annotations.zip`` and
``ImageSets.zip`` unpack)::

    JPEGImages-trainval/*.jpg
    JPEGImages-test/*.jpg
    Annotations/Horizontal Bounding Boxes/*.xml    (older copies: Annotations/*.xml)
    ImageSets/Main/{train,val,test}.txt

Coordinates: VOC corners, ``w = xmax - xmin`` (as the other VOC sources here).

Quirks:
- an image is in either image folder (trainval or test); the split comes from the ImageSets
  lists, not from the folder (an unlisted image has no official split: the build hashes it);
- the release ships oriented boxes beside the horizontal ones; Table III evaluates horizontal
  boxes, so only ``Horizontal Bounding Boxes`` (or the flat ``Annotations/``) is read;
- class names mix cases (``Expressway-Service-area``): they are matched exactly against the
  manifest; ``difficult=1`` objects are kept with ``iscrowd=1`` (VOC's evaluation ignores them).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tinyset_builder.coco import CocoDataset
from tinyset_builder.errors import ErrorPolicy
from tinyset_builder.formats.voc_xml import VocObject, format_voc_xml, read_voc_xml
from tinyset_builder.sources._voc_masks import add_voc_annotation, layout_hint, read_split_lists
from tinyset_builder.sources.base import SourceAssembler, SourceInfo, SynthSummary, load_info
from tinyset_builder.sources.coco_common import first_existing
from tinyset_builder.synth.canvas import save_image, scene

SPLITS = ("train", "val", "test")
IMAGE_DIRS = ("JPEGImages-trainval", "JPEGImages-test")
#: Annotation folders in the order tried (the current release, then the flat older one).
ANNOTATION_DIRS = ("Annotations/Horizontal Bounding Boxes", "Annotations")


def annotation_dir(root: Path) -> Path | None:
    """The folder of horizontal-box XML files, or None."""
    for rel in ANNOTATION_DIRS:
        folder = root / rel
        if folder.is_dir() and any(folder.glob("*.xml")):
            return folder
    return None


def convert(root: Path, info: SourceInfo, policy: ErrorPolicy) -> CocoDataset:
    """Read every horizontal-box XML; the ImageSets lists give the split."""
    asm = SourceAssembler(info, root, policy)
    folder = annotation_dir(root)
    if folder is None:
        policy.fatal(str(root / "Annotations"), f"no XML files found; {layout_hint(info)}")
        return asm.finish()
    lists_dir = root / "ImageSets" / "Main"
    if not lists_dir.is_dir():
        lists_dir = root / "ImageSets"
    lists = read_split_lists({s: lists_dir / f"{s}.txt" for s in SPLITS}, policy)
    for xml in sorted(folder.glob("*.xml")):
        ann = read_voc_xml(xml, policy)
        if ann is None:
            continue
        split = lists[xml.stem][0] if xml.stem in lists else None
        image = first_existing(root, [f"{d}/{xml.stem}.jpg" for d in IMAGE_DIRS])
        add_voc_annotation(asm, ann, image, split=split)
    return asm.finish()


def synthesize(root: Path, seed: int) -> SynthSummary:
    """Five 800x800 scenes (2 train, 1 val in the trainval folder; 2 test), a class of mixed
    case, one difficult object per image, and the oriented release beside the horizontal one."""
    rng = np.random.default_rng(seed)
    names = load_info("dior").categories
    plan = [("00001", "train"), ("00002", "train"), ("05901", "val"), ("11726", "test"),
            ("11727", "test")]
    annotations = ignore = 0
    splits: dict[str, int] = {}
    for stem, split in plan:
        pixels, boxes, labels = scene(rng, 800, 800, 25, len(names), min_size=6, max_size=120)
        folder = IMAGE_DIRS[1] if split == "test" else IMAGE_DIRS[0]
        save_image(root / folder / f"{stem}.jpg", pixels)
        objects = [VocObject(names[label], (x, y, x + w, y + h), difficult=k == 0)
                   for k, ((x, y, w, h), label) in enumerate(zip(boxes, labels, strict=True))]
        objects.append(VocObject("Expressway-Service-area", (400.0, 300.0, 520.0, 380.0)))
        xml = root / ANNOTATION_DIRS[0] / f"{stem}.xml"
        xml.parent.mkdir(parents=True, exist_ok=True)
        xml.write_text(format_voc_xml(f"{stem}.jpg", 800, 800, objects))
        # The oriented release beside it must not be read (same stems, other boxes).
        obb = root / "Annotations" / "Oriented Bounding Boxes" / f"{stem}.xml"
        obb.parent.mkdir(parents=True, exist_ok=True)
        obb.write_text(format_voc_xml(f"{stem}.jpg", 800, 800, objects[:1]))
        annotations += len(objects)
        ignore += 1
        splits[split] = splits.get(split, 0) + 1
    lists = root / "ImageSets" / "Main"
    lists.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        (lists / f"{split}.txt").write_text("".join(f"{s}\n" for s, sp in plan if sp == split))
    return SynthSummary(images=len(plan), annotations=annotations, ignore=ignore, splits=splits)
