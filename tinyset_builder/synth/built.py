"""A ready built dataset of synthetic scenes, without sources or a build run.

Benchmarks and tests that need a dataset as ``tinyset build`` leaves it (``build.json`` with
``"tool": "tinyset-builder"``, ``annotations/<split>.json``, ``images/<split>/<file>``) but not
TinySet's 1024² tiles write one here: square images of the synthetic sources' learnable shapes
(:func:`tinyset_builder.synth.canvas.scene`), two categories, pixels a pure function of the seed.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tinyset_builder.coco import CocoAnnotation, CocoCategory, CocoDataset, CocoImage

#: The two categories of every synthetic built dataset.
CATEGORIES = (CocoCategory(id=1, name="synth/car"), CocoCategory(id=2, name="synth/person"))


def write_scene_build(root: Path, counts: Mapping[str, int], *, size: int, objects: int,
                      min_side: int, max_side: int, seed: int = 0, version: str = "synthetic",
                      options: Mapping[str, Any] | None = None) -> Path:
    """Write ``counts[split]`` images of ``size``² per split under ``root``; return ``root``.

    Each image holds up to ``objects`` non-overlapping objects with sides in
    ``[min_side, max_side]`` px; ``options`` is recorded in ``build.json``.
    """
    import numpy as np

    from tinyset_builder.io import write_json
    from tinyset_builder.synth.canvas import save_image, scene

    rng = np.random.default_rng(seed)
    ann_id = img_id = 1
    for split, n in counts.items():
        images, anns = [], []
        for _ in range(n):
            pixels, boxes, labels = scene(rng, size, size, objects, len(CATEGORIES),
                                          min_size=min_side, max_size=max_side)
            name = f"{split}_{img_id:05d}.png"
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
    write_json(root / "build.json", {"tool": "tinyset-builder", "version": version,
                                     "options": dict(options or {})}, indent=2)
    return root
