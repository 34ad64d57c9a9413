"""LIVECell (microscopy): label-free phase-contrast cell images, COCO-like JSON per split.

Layout under ``RAW/livecell/`` (as ``images.zip`` and the S3 annotation files unpack)::

    images/livecell_train_val_images/[<CellType>/]*.tif    704x520 grayscale
    images/livecell_test_images/[<CellType>/]*.tif
    annotations/LIVECell/livecell_coco_{train,val,test}.json

Coordinates: ``bbox = [x, y, w, h]`` in pixels; ``segmentation`` holds cell polygons.

Quirks:
- ``annotations`` is a **dict keyed by annotation id**, not a list (the reader accepts both);
- the README shows a ``<CellType>/`` folder level that some copies lack, so images are found by
  a **recursive** search of the split's image folder (a name found twice is a bad record);
- some images were **annotated twice** and appear as two image entries with the same
  ``file_name`` (maintainers, issue #14). One entry is kept, deterministically: the one in the
  earliest split file (train, val, test), and within it the lowest image id. The other
  entries' annotations are counted as ``dropped_duplicate_image_entry``;
- a record without ``bbox`` gets the bounds of its polygons.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from tinyset_builder.coco import CocoDataset
from tinyset_builder.errors import ErrorPolicy
from tinyset_builder.formats.coco_json import (
    CocoJsonAnnotation,
    CocoJsonFile,
    CocoJsonImage,
    read_coco_json,
)
from tinyset_builder.paths import relative_posix
from tinyset_builder.sources.base import SourceAssembler, SourceInfo, SynthSummary
from tinyset_builder.sources.coco_common import CocoSynth, SynthTally, add_coco_file, first_dir

SPLITS = ("train", "val", "test")
IMAGE_DIRS = {"train": "images/livecell_train_val_images",
              "val": "images/livecell_train_val_images",
              "test": "images/livecell_test_images"}
IMAGE_SUFFIXES = frozenset({".tif", ".tiff", ".png"})


class _ImageIndex:
    """Image file name → relative paths, from a recursive listing of each image folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._index: dict[str, dict[str, list[str]]] = {}

    def _folder(self, folder: str) -> dict[str, list[str]]:
        if folder not in self._index:
            found: dict[str, list[str]] = defaultdict(list)
            for p in sorted((self.root / folder).rglob("*")):
                if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file():
                    found[p.name].append(relative_posix(p, self.root))
            self._index[folder] = dict(found)
        return self._index[folder]

    def locate(self, folder: str, file_name: str) -> list[str]:
        """Every match: the name as given under ``folder`` if it exists, else by base name."""
        direct = f"{folder}/{file_name}"
        if (self.root / direct).is_file():
            return [direct]
        return self._folder(folder).get(Path(file_name).name, [])


def _id_key(image_id: int | str) -> tuple[int, int, str]:
    """Order ids numerically when they are ints, after that as text."""
    return (0, image_id, "") if isinstance(image_id, int) else (1, 0, image_id)


def _kept_entries(docs: dict[str, CocoJsonFile]) -> set[tuple[str, int | str]]:
    """``(split, image id)`` of the one entry kept per ``file_name``: earliest split file, then
    lowest id, so the choice does not depend on the order of entries inside a file."""
    best: dict[str, tuple[int, tuple[int, int, str], str, int | str]] = {}
    for order, (split, doc) in enumerate(docs.items()):
        for im in doc.images:
            rank = (order, _id_key(im.id), split, im.id)
            if im.file_name not in best or rank[:2] < best[im.file_name][:2]:
                best[im.file_name] = rank
    return {(split, image_id) for _, _, split, image_id in best.values()}


def convert(root: Path, info: SourceInfo, policy: ErrorPolicy) -> CocoDataset:
    """Read ``livecell_coco_{train,val,test}.json``, keeping one entry per image file."""
    asm = SourceAssembler(info, root, policy)
    ann_dir = first_dir(root, ["annotations/LIVECell", "annotations", ""])
    docs: dict[str, CocoJsonFile] = {}
    found = False
    for split in SPLITS:
        path = root / ann_dir / f"livecell_coco_{split}.json"
        if path.is_file():
            found = True
            doc = read_coco_json(path, policy)
            if doc is not None:
                docs[split] = doc
    if not found:
        policy.fatal(str(root / ann_dir), "no livecell_coco_{train,val,test}.json found")
    kept = _kept_entries(docs)
    index = _ImageIndex(root)
    for split, doc in docs.items():
        by_image = doc.annotations_by_image()

        def duplicate(im: CocoJsonImage, split: str = split,
                      by_image: dict[int | str, list[CocoJsonAnnotation]] = by_image) -> bool:
            if (split, im.id) in kept:
                return False
            asm.counts["dropped_duplicate_image_entry"] += len(by_image.get(im.id, []))
            return True

        def locate(im: CocoJsonImage, split: str = split) -> str:
            folder = IMAGE_DIRS[split]
            matches = index.locate(folder, im.file_name)
            if len(matches) > 1:
                # Two files of the same name in different cell-type folders: which is meant is
                # unknowable, so the entry is refused (the assembler reports the given name).
                policy.fail(im.location, f"image {im.file_name!r} found {len(matches)} times "
                                         f"under {folder}: {', '.join(matches)}")
                return f"{folder}/{im.file_name}"
            return matches[0] if matches else f"{folder}/{im.file_name}"

        add_coco_file(asm, doc, split=split, locate=locate, skip_image=duplicate)
    return asm.finish()


def synthesize(root: Path, seed: int) -> SynthSummary:
    """Four 704x520 grayscale TIFFs (one entered twice), half in cell-type folders."""
    rng = np.random.default_rng(seed)
    tally = SynthTally()
    plan = {"train": ["A172", "BT474"], "val": ["SHSY5Y"], "test": ["MCF7"]}
    next_id = 1000 * (seed % 7)
    for split, cell_types in plan.items():
        synth = CocoSynth([(1, "cell")], tally)
        for k, cell_type in enumerate(cell_types):
            name = f"{cell_type}_Phase_C7_1_00d{4 * k:02d}h00m_{seed % 4 + 1}.tif"
            # The train/val folder has the cell-type level, the test folder is flat.
            rel = f"{cell_type}/{name}" if split != "test" else name
            next_id += 5
            image_id = synth.draw(rng, root / IMAGE_DIRS[split] / rel, file_name=name,
                                  width=704, height=520, n_objects=40, split=split, gray=True,
                                  image_id=next_id, min_size=6, max_size=22)
            # A cell with polygons but no bbox, touching the top edge.
            synth.annotations.append({"id": 900000 + image_id, "image_id": image_id,
                                      "category_id": 1, "iscrowd": 0,
                                      "segmentation": [[300.5, 0.0, 312.0, 2.5, 309.0, 11.0,
                                                        301.0, 9.5]]})
            tally.box()
        if split == "train":
            # The same file entered again under a higher id with its own (second) annotation:
            # the converter keeps the lower id and counts these boxes as dropped.
            dup = dict(synth.images[0], id=next_id + 100)
            synth.images.append(dup)
            for j in range(7):
                synth.box(dup["id"], (10.0 + 30 * j, 400.0, 12.0, 10.0), 1, count=False)
        synth.write(root / "annotations" / "LIVECell" / f"livecell_coco_{split}.json",
                    annotations_as_dict=True)
    return tally.summary()
