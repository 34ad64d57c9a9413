"""SODA-D (autonomous driving): high-resolution street scenes, one COCO JSON per split.

Layout under ``RAW/soda_d/`` (as the official zips unpack)::

    Images/*.jpg                               all splits in one folder, mixed sizes
    Annotations/{train,val,test}.json
    Annotations/{train,val,test}_wo_ignore.json   (written by generate_wo_ignore.py; not read)

Coordinates: ``bbox = [x, y, w, h]`` in pixels, horizontal.

Quirks:
- ``category_id == 10`` is an **ignore region** (the official ``generate_wo_ignore.py`` drops
  it): kept as ``soda_d/ignore`` with ``iscrowd = 1``, whatever name (or none) the file's
  ``categories`` table gives it;
- the nine classes are mapped by name (METAINFO order in the manifest);
- the ``*_wo_ignore.json`` copies hold the same boxes minus the ignore regions and are not read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tinyset_builder.coco import CocoDataset
from tinyset_builder.errors import ErrorPolicy
from tinyset_builder.formats.coco_json import CocoJsonAnnotation, read_coco_json
from tinyset_builder.sources.base import SourceAssembler, SourceInfo, SynthSummary, load_info
from tinyset_builder.sources.coco_common import CocoSynth, SynthTally, add_coco_file, in_folder

SPLITS = ("train", "val", "test")
IGNORE_ID = 10
IGNORE_NAME = "ignore"


def _category(ann: CocoJsonAnnotation) -> tuple[str, bool]:
    if ann.category_id == IGNORE_ID:
        return IGNORE_NAME, True
    return ann.category, ann.ignore


def convert(root: Path, info: SourceInfo, policy: ErrorPolicy) -> CocoDataset:
    """Read ``Annotations/{train,val,test}.json``; images from ``Images/``."""
    asm = SourceAssembler(info, root, policy)
    found = False
    for split in SPLITS:
        path = root / "Annotations" / f"{split}.json"
        if not path.is_file():
            continue
        found = True
        doc = read_coco_json(path, policy, implicit_categories={IGNORE_ID: IGNORE_NAME})
        if doc is not None:
            add_coco_file(asm, doc, split=split, category=_category, locate=in_folder("Images"))
    if not found:
        policy.fatal(str(root / "Annotations"), "no train.json, val.json or test.json found")
    return asm.finish()


def synthesize(root: Path, seed: int) -> SynthSummary:
    """Four street scenes up to 2400x1350 with ~60 tiny objects and ignore regions (id 10)."""
    rng = np.random.default_rng(seed)
    names = load_info("soda_d").categories[:9]
    tally = SynthTally()
    plan = {"train": [(2400, 1350), (1920, 1080)], "val": [(1920, 1080)], "test": [(1280, 720)]}
    number = 0
    for split, sizes in plan.items():
        cats = [(i, n) for i, n in enumerate(names, start=1)]
        synth = CocoSynth(cats, tally)
        for w, h in sizes:
            number += 1
            name = f"{seed:02d}{number:05d}.jpg"
            image_id = synth.draw(rng, root / "Images" / name, file_name=name, width=w, height=h,
                                  n_objects=60, split=split, min_size=4, max_size=28)
            # An ignore region (category 10, iscrowd 0 as the release writes it) crossing the
            # bottom edge, and a warning cone cut by the right edge.
            synth.box(image_id, (0.0, h - 150.0, 400.0, 200.0), IGNORE_ID, count=False)
            tally.box(ignore=True)
            synth.box(image_id, (w - 6.0, 300.0, 12.0, 14.0), 9)
        if split == "train":  # the train file lists id 10 in its table; val/test leave it out
            synth.categories.append((IGNORE_ID, "ignore"))
        synth.write(root / "Annotations" / f"{split}.json")
        # The official "without ignore" copy, which the converter must not read.
        kept = [a for a in synth.annotations if a["category_id"] != IGNORE_ID]
        wo = CocoSynth(cats, None)
        wo.images, wo.annotations = synth.images, kept
        wo.write(root / "Annotations" / f"{split}_wo_ignore.json")
    return tally.summary()
