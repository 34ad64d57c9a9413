"""Test data for the protocol tests: COCO datasets in memory and toolkit-built folders on disk.

Until ``tinyset build`` is used here, :func:`write_built_dataset` writes what a build leaves
behind (``build.json`` with ``"tool": "tinyset-builder"`` and ``annotations/<split>.json`` with
1024×1024 images carrying ``source``/``domain``/``split``), which is all ``tinyset derive`` reads.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from hypothesis import strategies as st

from tinyset_builder.coco import CocoAnnotation, CocoCategory, CocoDataset, CocoImage
from tinyset_builder.io import write_json

SIZE = 1024
CATEGORIES = [CocoCategory(id=i + 1, name=f"src{i % 2}/class{i}") for i in range(4)]


def make_image(image_id: int, split: str = "train", size: int = SIZE) -> CocoImage:
    return CocoImage(id=image_id, file_name=f"{split}/{image_id:06d}.jpg", width=size,
                     height=size, source=f"src{image_id % 2}", domain="aerial", split=split,
                     original_file=f"orig_{image_id}.jpg", window=(0, 0, size, size), scale=1.0)


def random_dataset(rng: np.random.Generator, *, images: int, split: str = "train",
                   max_anns: int = 12, crowd_rate: float = 0.1, empty_rate: float = 0.15,
                   first_ann_id: int = 1) -> CocoDataset:
    """A dataset of tiny random boxes; some images empty, some annotations ignore regions."""
    imgs = [make_image(i + 1, split) for i in range(images)]
    anns: list[CocoAnnotation] = []
    ann_id = first_ann_id
    for img in imgs:
        n = 0 if rng.random() < empty_rate else int(rng.integers(1, max_anns + 1))
        for _ in range(n):
            w, h = rng.uniform(1, 64, size=2)
            x, y = rng.uniform(0, SIZE - w), rng.uniform(0, SIZE - h)
            anns.append(CocoAnnotation(id=ann_id, image_id=img.id,
                                       category_id=int(rng.integers(1, 5)),
                                       bbox=(float(x), float(y), float(w), float(h)),
                                       iscrowd=int(rng.random() < crowd_rate)))
            ann_id += 1
    # Annotations deliberately not grouped by image: protocols must not depend on file order.
    order = rng.permutation(len(anns))
    return CocoDataset(images=imgs, annotations=[anns[i] for i in order],
                       categories=list(CATEGORIES), info={"description": "fixture"})


def write_built_dataset(root: Path, *, seed: int = 0, train: int = 120, val: int = 30,
                        test: int = 30, tool: str = "tinyset-builder") -> Path:
    """Write a toolkit-built dataset folder (``build.json`` + ``annotations/<split>.json``)."""
    rng = np.random.default_rng(seed)
    write_json(root / "build.json", {"tool": tool, "version": "0.1.0", "options": {}},
               indent=2)
    first = 1
    for split, n in (("train", train), ("val", val), ("test", test)):
        ds = random_dataset(rng, images=n, split=split, first_ann_id=first)
        first += len(ds.annotations)
        ds.save(root / "annotations" / f"{split}.json")
    return root


@st.composite
def datasets(draw: st.DrawFn, *, max_images: int = 8, max_anns: int = 8,
             size: int = SIZE) -> CocoDataset:
    """Hypothesis strategy: small COCO datasets with crowd boxes, empty images, shuffled ids."""
    n_images = draw(st.integers(0, max_images))
    image_ids = draw(st.lists(st.integers(0, 10_000), min_size=n_images, max_size=n_images,
                              unique=True))
    imgs = [make_image(i, size=size) for i in image_ids]
    anns: list[CocoAnnotation] = []
    ann_ids = iter(draw(st.permutations(range(1, max_images * max_anns + 1))))
    coord = st.floats(0, size - 1, allow_nan=False)
    for img in imgs:
        for _ in range(draw(st.integers(0, max_anns))):
            x, y = draw(coord), draw(coord)
            w = draw(st.floats(0.5, size - x, allow_nan=False, exclude_min=False))
            h = draw(st.floats(0.5, size - y, allow_nan=False, exclude_min=False))
            anns.append(CocoAnnotation(id=next(ann_ids), image_id=img.id,
                                       category_id=draw(st.integers(1, 4)), bbox=(x, y, w, h),
                                       iscrowd=int(draw(st.booleans()) and draw(st.booleans()))))
    anns = draw(st.permutations(anns))
    return CocoDataset(images=imgs, annotations=list(anns), categories=list(CATEGORIES))
