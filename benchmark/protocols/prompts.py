"""P2SOD point-prompt sets (``p2sod-1`` … ``p2sod-4``, paper Fig. 6) in the schema of
``docs/prompts.md``.

Per image, the object annotations (``iscrowd=0``) are grouped by category. The stream
``(seed, PROMPTS, image_id)`` draws, in this fixed order: the index of the image's *chosen
category* (uniform over the categories present, sorted by id), then for every category (sorted by
id) a permutation of its instances (sorted by id) and one ``U(-1, 1)²`` jitter draw per instance.
Every setting reads the same draws, so:

* ``p2sod-1`` — every category present, the first ``k`` instances of its permutation (k = 1);
* ``p2sod-2`` — every category present, all its instances;
* ``p2sod-3`` — the chosen category, the first ``k`` instances (k = 1);
* ``p2sod-4`` — the chosen category, all its instances.

Hence ``p2sod-1 ⊆ p2sod-2`` and ``p2sod-3 ⊆ p2sod-4`` point by point, and ``--num-points k``
(Table IV(b), settings 1 and 3 only) grows the sets by prefixes. A point is the box centre moved
by ``jitter`` as in :func:`benchmark.protocols.points.box_points` (Fig. 7); with jitter 0 it is
the exact centre, as in the paper.

Ignore regions are never prompted. An image without any object annotation gets no entry — there
is nothing to point at — and is counted under ``images_without_prompts``.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from benchmark.protocols.common import boxes_array, grouped
from benchmark.protocols.points import box_points
from benchmark.protocols.rng import Purpose, stream
from tinyset_builder.coco import CocoAnnotation, CocoDataset

SCHEMA = "tinyset-prompts/1"


def image_prompts(objects: list[CocoAnnotation], setting: int, num_points: int | None,
                  jitter: float, seed: int, image_id: int) -> list[dict[str, Any]]:
    """The prompt entries of one image (sorted by category id); ``[]`` if it has no object."""
    by_cat: dict[int, list[CocoAnnotation]] = defaultdict(list)
    for a in sorted(objects, key=lambda a: a.id):
        by_cat[a.category_id].append(a)
    cats = sorted(by_cat)
    if not cats:
        return []
    rng = stream(seed, Purpose.PROMPTS, image_id)
    chosen = cats[int(rng.integers(len(cats)))]
    entries = []
    for cat in cats:
        anns = by_cat[cat]
        perm = rng.permutation(len(anns))
        points = box_points(boxes_array(anns), rng.uniform(-1.0, 1.0, size=(len(anns), 2)),
                            jitter)
        if setting in (3, 4) and cat != chosen:
            continue
        take = perm if num_points is None else perm[:num_points]
        entries.append({"image_id": image_id, "category_id": cat,
                        "points": points[take].tolist(),
                        "ann_ids": [anns[i].id for i in take.tolist()]})
    return entries


def prompt_file(ds: CocoDataset, *, setting_name: str, setting: int, split: str, seed: int,
                dataset_sha256: str, num_points: int | None,
                jitter: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """The prompt document for one split, and its counts.

    Args:
        ds: the split's ground truth.
        setting_name: e.g. ``"p2sod-3"`` (written into the file).
        setting: the paper's setting number 1–4.
        split: ``"val"`` or ``"test"``.
        seed: the variant's seed.
        dataset_sha256: sha256 of the split's annotation file.
        num_points: at most this many points per entry; ``None`` means every instance.
        jitter: point jitter fraction in ``[0, 1]``.

    Returns:
        ``(document, counts)``; the document follows ``docs/prompts.md``.
    """
    groups = grouped(ds)
    prompts: list[dict[str, Any]] = []
    without = 0
    for img in sorted(ds.images, key=lambda i: i.id):
        objects = [a for a in groups.get(img.id, []) if not a.iscrowd]
        entries = image_prompts(objects, setting, num_points, jitter, seed, img.id)
        without += not entries
        prompts.extend(entries)
    doc = {"schema": SCHEMA, "setting": setting_name, "split": split, "seed": seed,
           "dataset": dataset_sha256, "num_points": num_points, "jitter": jitter,
           "prompts": prompts}
    counts = {"images": len(ds.images), "images_without_prompts": without,
              "prompt_sets": len(prompts),
              "points": int(np.sum([len(p["points"]) for p in prompts], dtype=np.int64))}
    return doc, counts
