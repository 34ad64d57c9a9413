"""SARDet-100K (satellite SAR): ten merged SAR detection sets in one COCO JSON per split.

Layout under ``RAW/sardet_100k/`` (the ``SARDet_100K/`` level is optional)::

    SARDet_100K/Annotations/{train,val,test}.json
    SARDet_100K/JPEGImages/{train,val,test}/*.{jpg,png,bmp,tif}

Coordinates: ``bbox = [x, y, w, h]`` in pixels, horizontal.

Quirks:
- the official mmdet config points every split at ``JPEGImages/``, so a ``file_name`` may already
  carry its split folder (``train/00077.jpg``) or not (``00077.jpg``): both are tried, the
  split folder first;
- category ids start at 0; boxes are mapped by name (official METAINFO order in the manifest);
- the official loader ignores ``iscrowd`` boxes and skips ``ignore: true`` ones: both are kept
  here as ignore regions (``iscrowd = 1``);
- early releases had no ``test.json``; any subset of the three files is read;
- HRSID is one of the ten merged sets: the build's dedupe step, not this converter, handles the
  overlap with the ``hrsid`` source.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from tinyset_builder.coco import CocoDataset
from tinyset_builder.errors import ErrorPolicy
from tinyset_builder.formats.coco_json import CocoJsonImage, read_coco_json
from tinyset_builder.sources.base import SourceAssembler, SourceInfo, SynthSummary, load_info
from tinyset_builder.sources.coco_common import (
    CocoSynth,
    SynthTally,
    add_coco_file,
    first_dir,
    first_existing,
    join,
)

SPLITS = ("train", "val", "test")


def _locator(root: Path, base: str, split: str) -> Callable[[CocoJsonImage], str]:
    def locate(im: CocoJsonImage) -> str:
        images = join(base, "JPEGImages")
        return first_existing(root, [join(images, split, im.file_name),
                                     join(images, im.file_name)])
    return locate


def convert(root: Path, info: SourceInfo, policy: ErrorPolicy) -> CocoDataset:
    """Read ``Annotations/{train,val,test}.json``; images under ``JPEGImages/``."""
    asm = SourceAssembler(info, root, policy)
    base = first_dir(root, ["SARDet_100K", ""])
    found = False
    for split in SPLITS:
        path = root / join(base, "Annotations", f"{split}.json")
        if not path.is_file():
            continue
        found = True
        doc = read_coco_json(path, policy)
        if doc is not None:
            add_coco_file(asm, doc, split=split, locate=_locator(root, base, split))
    if not found:
        policy.fatal(str(root / join(base, "Annotations")), "no train/val/test.json found")
    return asm.finish()


def synthesize(root: Path, seed: int) -> SynthSummary:
    """Five SAR patches of mixed size; train names carry the split folder, val/test do not."""
    rng = np.random.default_rng(seed)
    base = root / "SARDet_100K"
    names = load_info("sardet_100k").categories
    tally = SynthTally()
    plan = {"train": [(512, 512), (800, 800), (512, 512)], "val": [(1000, 600)],
            "test": [(512, 512)]}
    for split, sizes in plan.items():
        synth = CocoSynth(list(enumerate(names)), tally)
        for k, (w, h) in enumerate(sizes):
            stem = f"{seed:03d}{k:05d}.png" if split == "val" else f"{seed:03d}{k:05d}.jpg"
            file_name = f"{split}/{stem}" if split == "train" else stem
            image_id = synth.draw(rng, base / "JPEGImages" / split / stem, file_name=file_name,
                                  width=w, height=h, n_objects=20, split=split, gray=True,
                                  max_size=18)
            # One crowd box and one `ignore: true` box, both ignore regions for the converter.
            synth.box(image_id, (2.0, 2.0, 40.0, 30.0), 0, iscrowd=1)
            synth.box(image_id, (w - 20.0, h - 15.0, 25.0, 20.0), 2, ignore=True)
        synth.write(base / "Annotations" / f"{split}.json")
    return tally.summary()
