"""Tacna Olive: olive fruits on trees in Tacna, Peru, as a Roboflow-style YOLO export.

Provenance: no dataset called "Tacna Olive" is published under that exact name; the best-supported
candidate is the "Tacna Olive Dataset" of Osco-Mamani et al., "The Detection and Counting of Olive
Tree Fruits Using Deep Learning Models in Tacna, Peru" (MDPI AI 6(2):25, 2025), which trained YOLOv8
and so most likely ships a Roboflow-style YOLO export. The choice is recorded in
``manifests/sources/tacna_olive.toml`` (``identity``); another export of the same kind drops in
unchanged, and a different class spelling goes into :data:`ALIASES`.

Layout under ``RAW/tacna_olive/`` (as a Roboflow zip unpacks)::

    data.yaml                       # names: [olive]
    {train,valid,test}/images/*.jpg
    {train,valid,test}/labels/*.txt

Coordinates: YOLO normalised ``class cx cy w h`` scaled by each image's header size.

Quirks: a single class; fruits are tiny and clustered; label files of images with no visible
fruit are empty (kept as images without objects).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tinyset_builder.coco import CocoDataset
from tinyset_builder.errors import ErrorPolicy
from tinyset_builder.sources.base import SourceInfo, SynthSummary
from tinyset_builder.sources.yolo_common import (
    ROBOFLOW_SPLITS,
    convert_roboflow_yolo,
    write_data_yaml,
    write_yolo_image,
)

#: Spellings a copy may use for the manifest's single category.
ALIASES = {"olives": "olive", "Olive": "olive", "aceituna": "olive"}


def convert(root: Path, info: SourceInfo, policy: ErrorPolicy) -> CocoDataset:
    """Read the export's three split folders, the class name from ``data.yaml``."""
    return convert_roboflow_yolo(root, info, policy, ALIASES)


def synthesize(root: Path, seed: int) -> SynthSummary:
    """Four 1280x960 tree photos with ~40 tiny olives each, plus one with none (empty label)."""
    rng = np.random.default_rng(seed)
    write_data_yaml(root, ["olive"])
    plan = [("train", 2), ("valid", 1), ("test", 1)]
    images = annotations = 0
    splits: dict[str, int] = {}
    for folder, count in plan:
        for k in range(count):
            stem = f"IMG_{seed:04d}{images:03d}_jpg.rf.{rng.integers(16**8):08x}"
            # The first training photo shows no fruit: an empty label file, a negative image.
            n = 0 if (folder, k) == ("train", 0) else 40
            annotations += write_yolo_image(
                root / folder / "images" / f"{stem}.jpg", root / folder / "labels" / f"{stem}.txt",
                rng, (1280, 960), n, 1, min_size=5, max_size=18)
            images += 1
            split = ROBOFLOW_SPLITS[folder]
            splits[split] = splits.get(split, 0) + 1
    return SynthSummary(images=images, annotations=annotations, splits=splits)
