"""COCO 2017 (daily life): the standard COCO detection JSON, one file per split.

Layout under ``RAW/coco/`` (as ``train2017.zip``, ``val2017.zip`` and
``annotations_trainval2017.zip`` unpack)::

    train2017/*.jpg
    val2017/*.jpg
    annotations/instances_{train,val}2017.json

Coordinates: ``bbox = [x, y, w, h]`` in float pixels, top-left origin.

Quirks:
- category ids are non-contiguous (1..90 with 10 gaps): every box is mapped by its category
  *name* through the file's own table, and the manifest keeps the 80 original names;
- ``iscrowd = 1`` marks a crowd region (RLE mask) that COCO's evaluation ignores: kept in its
  category with ``iscrowd = 1``;
- about 1% of images have no annotations; they are kept (with no boxes) like in the source;
- the test split has no public labels, so only train and val are read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tinyset_builder.coco import CocoDataset
from tinyset_builder.errors import ErrorPolicy
from tinyset_builder.formats.coco_json import read_coco_json
from tinyset_builder.sources.base import SourceAssembler, SourceInfo, SynthSummary, load_info
from tinyset_builder.sources.coco_common import CocoSynth, SynthTally, add_coco_file, in_folder

SPLITS = {"train2017": "train", "val2017": "val"}
#: The ten ids COCO 2017 leaves unused between 1 and 90.
UNUSED_IDS = frozenset({12, 26, 29, 30, 45, 66, 68, 69, 71, 83})


def native_ids() -> list[int]:
    """COCO's 80 category ids in order (1..90 without the unused ten)."""
    return [i for i in range(1, 91) if i not in UNUSED_IDS]


def convert(root: Path, info: SourceInfo, policy: ErrorPolicy) -> CocoDataset:
    """Read ``annotations/instances_{train,val}2017.json`` and their image folders."""
    asm = SourceAssembler(info, root, policy)
    found = False
    for folder, split in SPLITS.items():
        path = root / "annotations" / f"instances_{folder}.json"
        if not path.is_file():
            continue
        found = True
        doc = read_coco_json(path, policy)
        if doc is not None:
            add_coco_file(asm, doc, split=split, locate=in_folder(folder))
    if not found:
        policy.fatal(str(root / "annotations"), "no instances_{train,val}2017.json found")
    return asm.finish()


def synthesize(root: Path, seed: int) -> SynthSummary:
    """Four 640x480-ish photos with real (non-contiguous) ids, a crowd RLE and an empty image."""
    rng = np.random.default_rng(seed)
    names = load_info("coco").categories
    categories = list(zip(native_ids(), names, strict=True))
    tally = SynthTally()
    plan = {"train2017": [(640, 480), (640, 427), (480, 640)], "val2017": [(640, 426)]}
    image_id = 100
    for folder, sizes in plan.items():
        # A handful of categories per file, picked from the 80 so gaps in the ids are exercised.
        picks = sorted(int(i) for i in rng.choice(len(categories), size=12, replace=False))
        synth = CocoSynth([categories[i] for i in picks], tally)
        for w, h in sizes:
            image_id += 7
            name = f"{image_id:012d}.jpg"
            synth.draw(rng, root / folder / name, file_name=name, width=w, height=h,
                       n_objects=30, split=SPLITS[folder], image_id=image_id, max_size=24)
        first = synth.images[0]["id"]
        # A crowd region with an uncompressed RLE, as COCO writes them; and a border box.
        synth.box(first, (59.0, 253.0, 252.0, 84.0), synth.categories[0][0], iscrowd=1,
                  segmentation={"counts": [59 * 480 + 253, 84, 480 * 640], "size": [480, 640]})
        synth.box(first, (620.5, 10.0, 30.0, 12.0), synth.categories[1][0],
                  segmentation=[[620.5, 10.0, 650.5, 10.0, 650.5, 22.0]])
        # An image with no annotations (COCO has about a thousand).
        image_id += 7
        name = f"{image_id:012d}.jpg"
        synth.draw(rng, root / folder / name, file_name=name, width=320, height=240,
                   n_objects=0, split=SPLITS[folder], image_id=image_id)
        synth.write(root / "annotations" / f"instances_{folder}.json")
    return tally.summary()
