"""A tiny toolkit-built dataset with real pixels, for the runner, report and adapter tests.

It has what ``tinyset build`` leaves behind and the benchmark reads: ``build.json`` with
``"tool": "tinyset-builder"``, ``annotations/{train,val,test}.json`` and
``images/<split>/<file>``. Images are smaller than TinySet's 1024² so CPU training steps stay
cheap; the objects are the synthetic sources' learnable shapes (tinyset_builder.synth.canvas).
"""

from __future__ import annotations

import json
from pathlib import Path

from tinyset_builder.synth.built import write_scene_build


def write_tiny_dataset(root: Path, *, size: int = 128, counts: dict[str, int] | None = None,
                       objects: int = 6, seed: int = 0) -> Path:
    """Write a built dataset under ``root`` and return ``root``."""
    return write_scene_build(root, counts or {"train": 4, "val": 2, "test": 2}, size=size,
                             objects=objects, min_side=6, max_side=20, seed=seed,
                             version="test", options={"size": size})


def add_train_quirks(root: Path, degenerate_bbox: list[float]) -> Path:
    """Make train's first annotation an ignore region and its second a degenerate box.

    Adapters must leave both out of their training targets; returns ``root``.
    """
    path = root / "annotations" / "train.json"
    coco = json.loads(path.read_text())
    coco["annotations"][0]["iscrowd"] = 1
    coco["annotations"][1]["bbox"] = degenerate_bbox
    path.write_text(json.dumps(coco))
    return root
