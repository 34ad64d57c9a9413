"""LS-SSDD-v1.0 (satellite SAR, ships): Pascal VOC XML per 800x800 sub-image.

Provenance: github ``TianwenZhang0825/LS-SSDD-v1.0-OPEN`` (Google Drive / Baidu); Kaggle mirror
``petrarodriguez/ls-ssdd-v1-0``. Two layouts of the sub-image version are read under
``RAW/ls_ssdd/``. The release's own, which public code reads (one image folder, VOC split
lists)::

    JPEGImages_sub/<scene>_<row>_<col>.jpg           all 9,000 tiles
    ImageSets/Main/train.txt, test.txt               tile names, scenes 01-10 / 11-15
    Annotations_sub/<scene>_<row>_<col>.xml          all 9,000 in one folder

and the one with an image folder per split (used when ``JPEGImages_sub/`` is absent)::

    JPEGImages_sub_train/<scene>_<row>_<col>.jpg     scenes 01-10 (6,000 tiles)
    JPEGImages_sub_test/<scene>_<row>_<col>.jpg      scenes 11-15 (3,000 tiles)
    Annotations_sub/<scene>_<row>_<col>.xml

Coordinates: LabelImg corners, ``w = xmax - xmin``. Single-channel SAR stored as JPEG.

Quirks:
- the split is the scene number in the name (01-10 train, 11-15 test), the paper's own rule,
  so it does not depend on which folder a mirror put a tile in; the release's split lists,
  when present, are checked against it (a tile listed under the other split is a bad record
  at its list line; a tile in no list still gets its scene's split);
- the Kaggle mirror nests each folder in a folder of the same name (``A/A/``), and a download
  may wrap the whole tree in one folder (``LS-SSDD-v1.0-OPEN/``): both are followed;
- most tiles are empty sea: an XML without ``<object>`` is a valid negative image, kept;
- a tile without an XML, or an XML whose name is not ``<scene>_<row>_<col>``, is a bad record.
The 15 original 24,000x16,000 scenes (``JPEGImages/``, ``Annotations/``) are not read: the
sub-images are the published benchmark split and hold the same ships.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from tinyset_builder.coco import CocoDataset
from tinyset_builder.errors import ErrorPolicy
from tinyset_builder.formats.voc_xml import VocObject, format_voc_xml, read_voc_xml
from tinyset_builder.paths import relative_posix
from tinyset_builder.sources._voc_masks import (
    add_voc_annotation,
    find_base,
    find_dir,
    layout_hint,
    read_split_lists,
)
from tinyset_builder.sources.base import SourceAssembler, SourceInfo, SynthSummary
from tinyset_builder.synth.canvas import save_image, scene

ANNOTATIONS = "Annotations_sub"
IMAGE_DIRS = {"train": "JPEGImages_sub_train", "test": "JPEGImages_sub_test"}
#: The release's layout: one image folder and VOC-style split lists.
RELEASE_IMAGES = "JPEGImages_sub"
RELEASE_LISTS = ("ImageSets", "Main")
TILE = re.compile(r"^(\d{2})_(\d+)_(\d+)$")
LAST_TRAIN_SCENE, LAST_SCENE = 10, 15


def scene_split(stem: str) -> str | None:
    """``"11_3_14"`` → ``"test"``; None when the name is not a tile name of scenes 01-15."""
    m = TILE.match(stem)
    if not m or not 1 <= int(m[1]) <= LAST_SCENE:
        return None
    return "train" if int(m[1]) <= LAST_TRAIN_SCENE else "test"


def convert(root: Path, info: SourceInfo, policy: ErrorPolicy) -> CocoDataset:
    """Read every tile's XML; the split comes from the scene number."""
    asm = SourceAssembler(info, root, policy)
    base = find_base(root, ANNOTATIONS, RELEASE_IMAGES, *IMAGE_DIRS.values())
    ann_dir = find_dir(base, ANNOTATIONS)
    if not ann_dir.is_dir():
        policy.fatal(str(ann_dir), f"annotation folder not found; {layout_hint(info)}")
    release = find_dir(base, RELEASE_IMAGES)
    if release.is_dir():
        image_dirs = {"train": release, "test": release}
        lists = base.joinpath(*RELEASE_LISTS)
        listed = read_split_lists({s: lists / f"{s}.txt" for s in IMAGE_DIRS}, policy)
    else:
        image_dirs = {split: find_dir(base, d) for split, d in IMAGE_DIRS.items()}
        listed = {}
    annotated = set()
    for xml in sorted(ann_dir.glob("*.xml")):
        split = scene_split(xml.stem)
        if split is None:
            policy.fail(str(xml), "file name is not <scene>_<row>_<col> with scene 01-15")
            continue
        annotated.add(xml.stem)
        if xml.stem in listed and listed[xml.stem][0] != split:
            policy.fail(listed[xml.stem][1], f"{xml.stem} is listed for {listed[xml.stem][0]}, "
                                             f"but scene {xml.stem[:2]} is {split}")
            continue
        ann = read_voc_xml(xml, policy)
        if ann is not None:
            image = relative_posix(image_dirs[split] / f"{xml.stem}.jpg", root)
            add_voc_annotation(asm, ann, image, split=split)
    for folder in sorted(set(image_dirs.values())):
        for image in sorted(folder.glob("*.jpg")):
            if image.stem not in annotated:
                policy.fail(str(image), f"no annotation file {ANNOTATIONS}/{image.stem}.xml")
    return asm.finish()


def synthesize(root: Path, seed: int) -> SynthSummary:
    """Five 800x800 grayscale tiles from scenes 01/07/10 (train) and 11/15 (test), one empty."""
    rng = np.random.default_rng(seed)
    tiles = ["01_1_1", "07_2_3", "10_4_2", "11_3_14", "15_1_9"]
    annotations = 0
    splits: dict[str, int] = {}
    for k, stem in enumerate(tiles):
        split = scene_split(stem)
        assert split is not None
        n = 0 if k == 1 else 25  # most real tiles are empty sea
        pixels, boxes, _ = scene(rng, 800, 800, n, 1, min_size=3, max_size=18)
        gray = pixels.mean(axis=2).astype(np.uint8)  # SAR is single-channel
        save_image(root / IMAGE_DIRS[split] / f"{stem}.jpg", gray)
        objects = [VocObject("ship", (x, y, x + w, y + h)) for x, y, w, h in boxes]
        xml = root / ANNOTATIONS / f"{stem}.xml"
        xml.parent.mkdir(parents=True, exist_ok=True)
        xml.write_text(format_voc_xml(f"{stem}.jpg", 800, 800, objects, depth=3))
        annotations += len(objects)
        splits[split] = splits.get(split, 0) + 1
    return SynthSummary(images=len(tiles), annotations=annotations, splits=splits)
