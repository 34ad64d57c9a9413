"""RGBT-Tiny (UAV): paired visible/thermal drone video frames, one COCO JSON per modality and split.

Layout under ``RAW/rgbt_tiny/`` (the annotation folder is ``annotations_coco/`` or
``annotations/`` depending on the copy)::

    images/<sequence>/00/<frame:05d>.jpg        visible (RGB), 640x512
    images/<sequence>/01/<frame:05d>.jpg        thermal (grayscale), 640x512
    annotations_coco/instances_00_{train,test}2017.json     visible
    annotations_coco/instances_01_{train,test}2017.json     thermal

Coordinates: ``bbox = [x, y, w, h]`` in pixels; every box has a ``tracking_id``.

Quirks:
- both modalities are kept, each frame as its **own image** (``.../00/...`` and ``.../01/...``):
  they are labelled separately and some targets exist in only one of them, so merging the two
  label sets onto one image would be wrong; the build's dedupe does not merge them either,
  because their pixels differ;
- ``tracking_id`` is kept on each annotation (useful for subsampling near-duplicate frames);
- category ids may start at 0 or 1 depending on the copy: boxes are mapped by name;
- ``file_name`` is relative to ``images/`` (``DJI_0022_1/00/00000.jpg``); a copy that includes
  the ``images/`` prefix also resolves.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tinyset_builder.coco import CocoDataset
from tinyset_builder.errors import ErrorPolicy
from tinyset_builder.formats.coco_json import read_coco_json
from tinyset_builder.sources.base import SourceAssembler, SourceInfo, SynthSummary, load_info
from tinyset_builder.sources.coco_common import (
    CocoSynth,
    SynthTally,
    add_coco_file,
    first_dir,
    first_existing,
    join,
)

MODALITIES = ("00", "01")  # visible, thermal
SPLITS = {"train2017": "train", "test2017": "test"}


def convert(root: Path, info: SourceInfo, policy: ErrorPolicy) -> CocoDataset:
    """Read the four ``instances_<modality>_<split>2017.json`` files present."""
    asm = SourceAssembler(info, root, policy)
    ann_dir = first_dir(root, ["annotations_coco", "annotations"])
    found = False
    for modality in MODALITIES:
        for stem, split in SPLITS.items():
            path = root / ann_dir / f"instances_{modality}_{stem}.json"
            if not path.is_file():
                continue
            found = True
            doc = read_coco_json(path, policy)
            if doc is not None:
                add_coco_file(asm, doc, split=split, extra_keys=("tracking_id",),
                              locate=lambda im: first_existing(
                                  root, [join("images", im.file_name), im.file_name]))
    if not found:
        policy.fatal(str(root / ann_dir), "no instances_{00,01}_{train,test}2017.json found")
    return asm.finish()


def synthesize(root: Path, seed: int) -> SynthSummary:
    """Two sequences (train: 2 frames, test: 1), each frame in both modalities, 640x512."""
    rng = np.random.default_rng(seed)
    names = load_info("rgbt_tiny").categories
    tally = SynthTally()
    plan = {"train2017": (f"DJI_{seed % 100:04d}_1", 2), "test2017": (f"DJI_{seed % 100:04d}_2", 1)}
    for modality in MODALITIES:
        for stem, (seq, frames) in plan.items():
            # 1-based ids in the visible files, 0-based in the thermal ones: copies differ.
            base_id = 1 if modality == "00" else 0
            synth = CocoSynth([(base_id + i, n) for i, n in enumerate(names)], tally)
            for frame in range(frames):
                file_name = f"{seq}/{modality}/{frame:05d}.jpg"
                synth.draw(rng, root / "images" / file_name, file_name=file_name, width=640,
                           height=512, n_objects=25, split=SPLITS[stem], gray=modality == "01",
                           max_size=14, ann_extra=lambda k: {"tracking_id": k + 1})
            synth.write(root / "annotations_coco" / f"instances_{modality}_{stem}.json")
    return tally.summary()
