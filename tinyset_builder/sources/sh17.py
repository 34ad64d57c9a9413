"""SH17: personal protective equipment in manufacturing (Pexels photos), YOLO labels.

Provenance: Kaggle ``mugheesahmad/sh17-dataset-for-ppe-detection`` and github
``ahmadmughees/SH17dataset`` (URL list, ``sh17.yaml``). 8,099 images, 75,994 boxes, 17 classes.

Layout under ``RAW/sh17/`` (the Kaggle download, flat)::

    images/pexels-photo-<id>.jpeg    # also .jpg
    labels/pexels-photo-<id>.txt
    voc_labels/*.xml                 # the same boxes as VOC XML (not read)
    train_files.txt, val_files.txt   # one image path per line: the official split

Coordinates: YOLO normalised ``class cx cy w h``; images range from 1920x1002 to 8192x5462, so
every size is read from the image header.

Quirks:
- class ids follow ``sh17.yaml`` (person, ear, ear-mufs, ...), *not* the README's class order;
- the split lists hold paths whose prefix the repository's helper rewrites (``root + line``),
  so lines are matched to images by file name alone, whatever prefix they carry;
- an image listed in neither file has no official split (``None``: the build assigns one by
  hash); a listed image that is missing, or one listed in both files, is a bad record.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import numpy as np

from tinyset_builder.coco import CocoDataset
from tinyset_builder.errors import ErrorPolicy, where
from tinyset_builder.formats.text import read_lines
from tinyset_builder.sources.base import SourceAssembler, SourceInfo, SynthSummary
from tinyset_builder.sources.yolo_common import add_yolo_pairs, write_yolo_image, yolo_pairs

SPLIT_LISTS = {"train_files.txt": "train", "val_files.txt": "val"}


def read_split_lists(root: Path, policy: ErrorPolicy) -> dict[str, tuple[str, str]]:
    """Image file name -> ``(official split, where it is listed)``, from the lists present."""
    split_of: dict[str, tuple[str, str]] = {}
    for list_name, split in SPLIT_LISTS.items():
        path = root / list_name
        if not path.is_file():
            continue
        for lineno, text in read_lines(path, policy):
            name = PurePosixPath(text.replace("\\", "/")).name
            if name in split_of and split_of[name][0] != split:
                policy.fail(where(path, lineno), f"{name} is listed in both "
                                                 f"{' and '.join(SPLIT_LISTS)}")
                continue
            split_of[name] = (split, where(path, lineno))
    return split_of


def convert(root: Path, info: SourceInfo, policy: ErrorPolicy) -> CocoDataset:
    """Pair ``images/`` with ``labels/`` and split them by the two lists."""
    asm = SourceAssembler(info, root, policy)
    split_of = read_split_lists(root, policy)
    pairs = yolo_pairs(root / "images", root / "labels", policy)
    if pairs is None:
        policy.fatal(str(root / "labels"), "labels folder not found (expected YOLO label "
                                           "files beside images/)")
    present = {image.name for image, _ in pairs}
    for name in sorted(set(split_of) - present):
        policy.fail(split_of[name][1], f"listed image {name} not found in {root / 'images'}")
    add_yolo_pairs(asm, pairs, lambda image: split_of.get(image.name, (None, ""))[0],
                   info.categories)
    return asm.finish()


def synthesize(root: Path, seed: int) -> SynthSummary:
    """Three factory photos (the smallest real size, 1920x1002), ~30 PPE items each."""
    rng = np.random.default_rng(seed)
    plan = [((1920, 1002), ".jpeg", "train"), ((1002, 1920), ".jpg", "train"),
            ((1920, 1080), ".jpeg", "val")]
    annotations = 0
    lists: dict[str, list[str]] = {"train": [], "val": []}
    for i, (size, suffix, split) in enumerate(plan):
        stem = f"pexels-photo-{seed * 1000 + 101 * i + 7}"
        annotations += write_yolo_image(root / "images" / f"{stem}{suffix}",
                                        root / "labels" / f"{stem}.txt", rng, size, 30, 17,
                                        min_size=6, max_size=48)
        # Prefixes differ between copies of the lists; the converter matches by file name.
        lists[split].append(f"{'/images/' if i % 2 else 'images/'}{stem}{suffix}")
    for list_name, split in SPLIT_LISTS.items():
        (root / list_name).write_text("\n".join(lists[split]) + "\n")
    return SynthSummary(images=len(plan), annotations=annotations,
                        splits={s: len(v) for s, v in lists.items()})
