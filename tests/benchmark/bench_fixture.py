"""A tiny toolkit-built dataset with real pixels, for the runner, report and adapter tests.

It has what ``tinyset build`` leaves behind and the benchmark reads: ``build.json`` with
``"tool": "tinyset-builder"``, ``annotations/{train,val,test}.json`` and
``images/<split>/<file>``. Images are smaller than TinySet's 1024² so CPU training steps stay
cheap; the objects are the synthetic sources' learnable shapes (tinyset_builder.synth.canvas).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tinyset_builder.coco import CocoAnnotation, CocoCategory, CocoDataset, CocoImage
from tinyset_builder.io import write_json
from tinyset_builder.synth.canvas import save_image, scene

CATEGORIES = [CocoCategory(id=1, name="synth/car"), CocoCategory(id=2, name="synth/person")]


def write_tiny_dataset(root: Path, *, size: int = 128, counts: dict[str, int] | None = None,
                       objects: int = 6, seed: int = 0) -> Path:
    """Write a built dataset under ``root`` and return ``root``."""
    counts = counts or {"train": 4, "val": 2, "test": 2}
    rng = np.random.default_rng(seed)
    ann_id, img_id = 1, 1
    for split, n in counts.items():
        images, anns = [], []
        for _ in range(n):
            pixels, boxes, labels = scene(rng, size, size, objects, len(CATEGORIES),
                                          min_size=6, max_size=20)
            name = f"{split}_{img_id:04d}.png"
            save_image(root / "images" / split / name, pixels)
            images.append(CocoImage(id=img_id, file_name=name, width=size, height=size,
                                    source="synth", domain="aerial", split=split,
                                    original_file=name, window=(0, 0, size, size), scale=1.0))
            for box, label in zip(boxes, labels, strict=True):
                anns.append(CocoAnnotation(id=ann_id, image_id=img_id,
                                           category_id=CATEGORIES[label].id,
                                           bbox=tuple(float(v) for v in box)))
                ann_id += 1
            img_id += 1
        CocoDataset(images=images, annotations=anns, categories=list(CATEGORIES)).save(
            root / "annotations" / f"{split}.json")
    write_json(root / "build.json", {"tool": "tinyset-builder", "version": "test",
                                     "options": {"size": size}}, indent=2)
    return root


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
