"""HRSID (satellite SAR): high-resolution SAR ship chips, COCO instance-segmentation JSON.

Layout under ``RAW/hrsid/`` (as ``HRSID_JPG.rar`` unpacks; the ``HRSID_JPG/`` level is optional)::

    HRSID_JPG/JPEGImages/*.jpg                        800x800, SAR repeated to 3 channels
    HRSID_JPG/annotations/{train2017,test2017,train_test2017}.json

Coordinates: ``bbox = [x, y, w, h]`` in pixels, plus ship polygons in ``segmentation``.

Quirks:
- category ids are not stable between exports (the modified-HRSID relabel uses ``id 0``), so the
  single category is mapped by its *name* ``ship``;
- ``train_test2017.json`` is the union of the two others and is not read (it would double every
  image);
- file names encode the scene and crop window (``P0001_0_800_7200_8000.jpg``); ships cut by the
  chip border touch ``x = 0``; the assembler clips any that go past the edge.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tinyset_builder.coco import CocoDataset
from tinyset_builder.errors import ErrorPolicy
from tinyset_builder.formats.coco_json import read_coco_json
from tinyset_builder.sources.base import SourceAssembler, SourceInfo, SynthSummary
from tinyset_builder.sources.coco_common import (
    CocoSynth,
    SynthTally,
    add_coco_file,
    first_dir,
    in_folder,
    join,
)

SPLITS = {"train2017": "train", "test2017": "test"}


def convert(root: Path, info: SourceInfo, policy: ErrorPolicy) -> CocoDataset:
    """Read ``annotations/{train,test}2017.json``; images from ``JPEGImages/``."""
    asm = SourceAssembler(info, root, policy)
    base = first_dir(root, ["HRSID_JPG", ""])
    found = False
    for stem, split in SPLITS.items():
        path = root / join(base, "annotations", f"{stem}.json")
        if not path.is_file():
            continue
        found = True
        doc = read_coco_json(path, policy)
        if doc is not None:
            add_coco_file(asm, doc, split=split, locate=in_folder(base, "JPEGImages"))
    if not found:
        policy.fatal(str(root / join(base, "annotations")), "no train2017.json or test2017.json")
    return asm.finish()


def synthesize(root: Path, seed: int) -> SynthSummary:
    """Four 800x800 grayscale-looking SAR chips (3 train, 1 test) with ships; category id 0."""
    rng = np.random.default_rng(seed)
    base = root / "HRSID_JPG"
    tally = SynthTally()
    union = CocoSynth([(0, "ship")], None)
    for stem, count in (("train2017", 3), ("test2017", 1)):
        synth = CocoSynth([(0, "ship")], tally)
        for k in range(count):
            y0, x0 = 800 * k, 800 * (k + seed % 5 + 10 * len(tally.splits))
            name = f"P{seed % 90 + 1:04d}_{y0}_{y0 + 800}_{x0}_{x0 + 800}.jpg"
            image_id = synth.draw(rng, base / "JPEGImages" / name, file_name=name, width=800,
                                  height=800, n_objects=25, split=SPLITS[stem],
                                  image_id=k, min_size=5, max_size=30)
            # A ship cut by the left border, as offshore chips have.
            synth.box(image_id, (0.0, 306.0, 24.0, 25.0), 0,
                      segmentation=[[0.0, 306.0, 23.89, 306.0, 24.0, 331.0, 0.0, 331.0]])
        synth.write(base / "annotations" / f"{stem}.json")
        union.images += synth.images
    # The union file the converter must not read (it would double-count).
    union.write(base / "annotations" / "train_test2017.json")
    return tally.summary()
