"""Small synthetic COCO datasets for DEAL's tests and quick experiments.

Images are drawn with :mod:`tinyset_builder.synth.canvas` (the same scenes every synthetic source
uses): textured backgrounds with tiny objects whose category decides colour and shape. The
output is a COCO file plus PNG images, a pure function of the arguments.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tinyset_builder.io import write_json
from tinyset_builder.synth.canvas import save_image, scene


def make_scene_coco(out: Path, *, n_images: int, size: int = 128, n_objects: int = 12,
                    n_categories: int = 3, min_size: int = 4, max_size: int = 12,
                    seed: int = 0, empty_every: int = 0, split: str = "train") -> Path:
    """Write ``out/images/<split>/*.png`` and ``out/annotations/<split>.json``.

    Args:
        out: dataset folder (laid out like a built TinySet).
        n_images: number of images.
        size: square image side in pixels.
        n_objects: objects per image (up to; non-overlapping).
        n_categories: categories (ids 1..n).
        min_size: smallest object side.
        max_size: largest object side.
        seed: random seed.
        empty_every: every k-th image has no object (0 = never).
        split: split name.

    Returns:
        The annotation file.
    """
    rng = np.random.default_rng(seed)
    images, anns = [], []
    for i in range(n_images):
        k = 0 if empty_every and (i + 1) % empty_every == 0 else n_objects
        img, boxes, labels = scene(rng, size, size, k, n_categories, min_size=min_size,
                                   max_size=max_size)
        name = f"img_{i:05d}.png"
        save_image(out / "images" / split / name, img)
        images.append({"id": i + 1, "file_name": name, "width": size, "height": size,
                       "split": split})
        for (x, y, w, h), lab in zip(boxes, labels, strict=True):
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": lab + 1,
                         "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
    cats = [{"id": c + 1, "name": f"synth/c{c}", "supercategory": "synth"}
            for c in range(n_categories)]
    path = out / "annotations" / f"{split}.json"
    write_json(path, {"info": {}, "images": images, "annotations": anns, "categories": cats})
    return path
