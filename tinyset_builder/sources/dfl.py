"""DFL Bundesliga frames with boxes: the Roboflow "football-players-detection" export (YOLO).

Provenance: the Kaggle "DFL - Bundesliga Data Shootout" competition has video and *event* labels
only, no boxes. The best-supported box-labelled copy of its frames is Roboflow Universe
``roboflow-jvuqo/football-players-detection-3zvbc`` (named by the roboflow/sports README as built
from DFL clips); it is our candidate, chosen in ``manifests/sources/dfl.toml`` (``identity``).
To switch to another Roboflow copy, unpack its YOLO export instead; if it spells a class
differently, add the spelling to :data:`ALIASES`.

Layout under ``RAW/dfl/`` (the Roboflow zip unpacks flat)::

    data.yaml                       # names: [ball, goalkeeper, player, referee]
    {train,valid,test}/images/<clip>_<frame>_png.rf.<hash>.jpg
    {train,valid,test}/labels/<same stem>.txt

Coordinates: YOLO normalised ``class cx cy w h``, scaled by the size read from each image header
(forks are often re-exported at 1280x1280 "stretch", so 1920x1080 must not be assumed).

Quirks:
- class names come from ``data.yaml``, not from a fixed table: ids follow that file's order;
- the fork in ``realsamples/`` names class 0 ``football`` where the original says ``ball``;
- the ball is the tiny object (about 8x15 px), players are small.
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

#: Other copies' spellings of the manifest's category names.
ALIASES = {"football": "ball"}


def convert(root: Path, info: SourceInfo, policy: ErrorPolicy) -> CocoDataset:
    """Read the Roboflow export's three split folders, classes from ``data.yaml``."""
    return convert_roboflow_yolo(root, info, policy, ALIASES)


def synthesize(root: Path, seed: int) -> SynthSummary:
    """Four 1920x1080 match frames (2 train, 1 valid, 1 test), ~25 small players/balls each."""
    rng = np.random.default_rng(seed)
    # The fork's spelling, so the alias path is exercised by every synthetic build.
    write_data_yaml(root, ["football", "goalkeeper", "player", "referee"])
    plan = [("train", 2), ("valid", 1), ("test", 1)]
    images = annotations = 0
    splits: dict[str, int] = {}
    for folder, count in plan:
        for k in range(count):
            stem = f"{seed:06x}_{k}_{images * 25}_png.rf.{rng.integers(16**8):08x}"
            annotations += write_yolo_image(
                root / folder / "images" / f"{stem}.jpg", root / folder / "labels" / f"{stem}.txt",
                rng, (1920, 1080), 25, 4, min_size=6, max_size=40,
                # A player cut by the right edge: the assembler clips it to the frame.
                extra_lines=["2 0.99850000 0.50000000 0.00400000 0.03000000"] if k == 0 else ())
            images += 1
            split = ROBOFLOW_SPLITS[folder]
            splits[split] = splits.get(split, 0) + 1
    return SynthSummary(images=images, annotations=annotations, splits=splits)

