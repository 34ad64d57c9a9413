"""Sparse-shot labels (``shot-1``, ``shot-3``, ``shot-5``): every image, at most k instances.

For each training image the object annotations (``iscrowd=0``), sorted by id, are shuffled once
by the stream ``(seed, SHOT, image_id)``; the k-shot file keeps the first ``min(k, n_i)`` of that
order. The order does not depend on k, so ``1-shot ⊂ 3-shot ⊂ 5-shot`` per image
(methods.md §4.3). Every image is kept, including those with no objects.

Ignore regions (``iscrowd=1``) are kept in every k-shot file and do not count towards k: they are
region labels that tell a detector where not to learn, not instances, and dropping them would
turn crowded areas into false negatives on top of the withheld instances.
"""

from __future__ import annotations

from typing import Any

from benchmark.protocols.common import derived, grouped, in_file_order
from benchmark.protocols.rng import Purpose, stream
from tinyset_builder.coco import CocoAnnotation, CocoDataset


def instance_order(objects: list[CocoAnnotation], seed: int,
                   image_id: int) -> list[CocoAnnotation]:
    """The image's object annotations in the order they are kept (prefixes are the k-shot sets)."""
    objects = sorted(objects, key=lambda a: a.id)
    perm = stream(seed, Purpose.SHOT, image_id).permutation(len(objects))
    return [objects[i] for i in perm.tolist()]


def sparse_shot(ds: CocoDataset, k: int, seed: int) -> tuple[CocoDataset, dict[str, Any]]:
    """The k-shot copy of ``ds`` and its counts (see the module docstring)."""
    keep: dict[int, CocoAnnotation] = {}
    n_objects = n_crowd = fewer = empty = 0
    groups = grouped(ds)
    for img in ds.images:
        anns = groups.get(img.id, [])
        objects = [a for a in anns if not a.iscrowd]
        for a in anns:
            if a.iscrowd:
                keep[a.id] = a
                n_crowd += 1
        n_objects += len(objects)
        empty += not objects
        fewer += 0 < len(objects) < k
        for a in instance_order(objects, seed, img.id)[:k]:
            keep[a.id] = a
    kept = len(keep) - n_crowd
    counts = {"images": len(ds.images), "instances": n_objects, "instances_kept": kept,
              "instances_withheld": n_objects - kept, "ignore_regions_kept": n_crowd,
              "images_with_fewer_than_k": fewer, "images_without_instances": empty}
    variant = {"protocol": "sparse-shot", "k": k, "seed": seed}
    return derived(ds, annotations=in_file_order(ds, keep), variant=variant), counts
