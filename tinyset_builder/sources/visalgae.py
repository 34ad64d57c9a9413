"""VisAlgae 2023 ("Vision Meets Algae"): microscope images of six algae species, YOLO labels.

Provenance: github ``juntaoJianggavin/Visalgae2023`` (challenge on Alibaba Tianchi; Kaggle mirror
``marquis03/high-throughput-algae-cell-detection``). 1,000 images: 700 train, 300 test.

Layout under ``RAW/visalgae/`` (the Kaggle mirror; the official archive is unconfirmed)::

    train/images/00001.jpg
    train/labels/00001.txt          # labelled with LabelImg, converted to YOLO
    test/images/*.jpg
    test/labels/*.txt               # only if the test labels were released

Coordinates: YOLO normalised ``class cx cy w h``; sizes from the image headers (the released
labels back-compute to 1904 px wide images, height 608 or 1216, unconfirmed).

Quirks:
- fields are separated by spaces in the files seen, by commas in the challenge's description:
  the reader accepts both, even mixed within a file;
- LabelImg leaves a ``classes.txt`` among the labels; it is a class list, not an image's labels;
- test labels may be unpublished: a split without ``labels/`` is left out and counted
  (``dropped_unlabelled_images``) rather than read as 300 images without algae;
- species differ about 5x in size; Chlorella boxes are the tiny ones (~16 px).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tinyset_builder.coco import CocoDataset
from tinyset_builder.errors import ErrorPolicy
from tinyset_builder.sources.base import SourceAssembler, SourceInfo, SynthSummary
from tinyset_builder.sources.yolo_common import add_yolo_split, write_yolo_image

SPLIT_DIRS = {"train": "train", "test": "test"}


def convert(root: Path, info: SourceInfo, policy: ErrorPolicy) -> CocoDataset:
    """Read each split folder; class ids index the manifest's category list."""
    asm = SourceAssembler(info, root, policy)
    for folder, split in SPLIT_DIRS.items():
        add_yolo_split(asm, root / folder / "images", root / folder / "labels", split,
                       info.categories)
    return asm.finish()


def synthesize(root: Path, seed: int) -> SynthSummary:
    """Four 1904-px-wide micrographs (3 train, 1 test) with ~60 cells of six species each."""
    rng = np.random.default_rng(seed)
    plan = [("train", (1904, 1216)), ("train", (1904, 608)), ("train", (1904, 608)),
            ("test", (1904, 1216))]
    annotations = 0
    splits: dict[str, int] = {}
    for i, (folder, size) in enumerate(plan, start=1):
        stem = f"{seed * 100 + i:05d}"
        # The second file uses commas, as the challenge's format description does.
        annotations += write_yolo_image(
            root / folder / "images" / f"{stem}.jpg", root / folder / "labels" / f"{stem}.txt",
            rng, size, 60, 6, min_size=6, max_size=36, sep="," if i == 2 else " ")
        splits[SPLIT_DIRS[folder]] = splits.get(SPLIT_DIRS[folder], 0) + 1
    (root / "train" / "labels" / "classes.txt").write_text(
        "Platymonas\nChlorella\nDunaliella salina\nEffrenium\nPorphyridium\nHaematococcus\n")
    return SynthSummary(images=len(plan), annotations=annotations, splits=splits)
