"""TinyPerson (people far away at sea and on beaches; a transfer target of Table VI, not a
TinySet source): COCO JSON with ignore regions.

Provenance: Yu, Gong, Jiang, Ye and Han, "Scale Match for Tiny Person Detection", WACV 2020 —
1,610 images (794 train, 816 test), 72,651 boxes, two classes (``sea_person``,
``earth_person``); downloads linked from ucas-vg/PointTinyBenchmark (``dataset/README.md``).
Layout under ``RAW/tinyperson/`` (``tiny_set.zip`` unpacks into ``tiny_set/``; a flattened copy
without that folder is read too)::

    tiny_set/train/labeled_images/*.jpg
    tiny_set/test/labeled_images/*.jpg
    tiny_set/annotations/tiny_set_train.json
    tiny_set/annotations/tiny_set_test.json

``file_name`` is relative to the split folder (``labeled_images/<name>.jpg``); boxes are COCO
``[x, y, w, h]``.

Quirks:
- ``ignore: true`` marks a region the evaluation ignores (crowds, reflections, unclear people):
  kept with ``iscrowd = 1`` in its category;
- ``uncertain: true`` marks a box the annotators could not decide on; TinyPerson's evaluation
  ignores those too, so they are kept with ``iscrowd = 1``; ``uncertain``, ``in_dense_image``
  and ``logo`` are kept on the annotation;
- the erased/``corner`` variants of the annotation files (training-time tiles of the same images)
  are not read: the build tiles the original images itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tinyset_builder.coco import CocoDataset
from tinyset_builder.errors import ErrorPolicy
from tinyset_builder.formats.coco_json import CocoJsonAnnotation, read_coco_json
from tinyset_builder.sources.base import SourceAssembler, SourceInfo, SynthSummary
from tinyset_builder.sources.coco_common import CocoSynth, SynthTally, add_coco_file, in_folder

SPLITS = ("train", "test")
#: Native ids of the two classes (as the release numbers them).
NATIVE = ((1, "sea_person"), (2, "earth_person"))
EXTRA_KEYS = ("uncertain", "in_dense_image", "logo")


def base_prefix(root: Path) -> str:
    """``"tiny_set"`` as the archive unpacks, or ``""`` for a flattened copy."""
    return "tiny_set" if (root / "tiny_set" / "annotations").is_dir() else ""


def category(ann: CocoJsonAnnotation) -> tuple[str, bool]:
    """The file's category; ``ignore`` or ``uncertain`` make the box an ignore region."""
    return ann.category, ann.ignore or ann.extra.get("uncertain") in (True, 1)


def convert(root: Path, info: SourceInfo, policy: ErrorPolicy) -> CocoDataset:
    """Read ``annotations/tiny_set_{train,test}.json`` and their image folders."""
    asm = SourceAssembler(info, root, policy)
    prefix = base_prefix(root)
    found = False
    for split in SPLITS:
        path = root / prefix / "annotations" / f"tiny_set_{split}.json"
        if not path.is_file():
            continue
        found = True
        doc = read_coco_json(path, policy)
        if doc is not None:
            add_coco_file(asm, doc, split=split, locate=in_folder(prefix, split),
                          category=category, extra_keys=EXTRA_KEYS)
    if not found:
        policy.fatal(str(root / prefix / "annotations"), "no tiny_set_{train,test}.json found")
    return asm.finish()


def synthesize(root: Path, seed: int) -> SynthSummary:
    """Three train and two test seaside scenes (1920x1080 and smaller) with very small people,
    an ignore region and an uncertain box per image."""
    rng = np.random.default_rng(seed)
    tally = SynthTally()
    plan = {"train": [(1920, 1080), (1280, 720), (1920, 1080)], "test": [(1920, 1080),
                                                                         (1024, 768)]}
    for split, sizes in plan.items():
        synth = CocoSynth(NATIVE, tally)
        for k, (w, h) in enumerate(sizes):
            name = f"labeled_images/bb_V{seed % 100:04d}_I{k:07d}.jpg"
            image_id = synth.draw(rng, root / "tiny_set" / split / name, file_name=name,
                                  width=w, height=h, n_objects=25, split=split, min_size=2,
                                  max_size=14,
                                  ann_extra=lambda j: {"uncertain": False, "in_dense_image": False,
                                                       "logo": False, "ignore": False})
            synth.box(image_id, (40.0, 60.0, 180.0, 90.0), NATIVE[0][0], ignore=True,
                      uncertain=False)
            synth.box(image_id, (300.0, 200.0, 6.0, 11.0), NATIVE[1][0], uncertain=True,
                      count=False)
            tally.box(ignore=True)  # uncertain: an ignore region too
        synth.write(root / "tiny_set" / "annotations" / f"tiny_set_{split}.json")
    return tally.summary()
