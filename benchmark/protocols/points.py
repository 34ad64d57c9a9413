"""Point labels (``points-center``, ``points-jitter``) and the point geometry prompts share.

A point with jitter ``f ∈ [0, 1]`` is ``(cx + f·u·w/2, cy + f·v·h/2)`` with ``u, v ~ U(-1, 1)``
drawn per instance: ``f = 0`` is the box centre (the paper's "Center Point"), ``f = 1`` is a point
uniform over the whole box, and in between the point is uniform over the centred box scaled by
``f`` (Point Teacher's 30 / 60 / 100 % shifts, methods.md §4.4). Points never leave their box.

The point is stored with its annotation as ``point: [x, y]`` in the same COCO file; the box stays
so analysis can compare, but weakly supervised trainers must read only ``point``. Ignore regions
(``iscrowd=1``) get no point: they are copied unchanged so trainers can still mask them out.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from benchmark.protocols.common import boxes_array, derived, grouped, in_file_order
from benchmark.protocols.rng import Purpose, stream
from tinyset_builder.coco import CocoAnnotation, CocoDataset


def box_points(boxes: npt.ArrayLike, u: npt.ArrayLike, jitter: float) -> npt.NDArray[np.float64]:
    """Points for ``[x, y, w, h]`` boxes given draws ``u`` (``(N, 2)`` in ``[-1, 1]``).

    Args:
        boxes: ``(N, 4)`` boxes.
        u: ``(N, 2)`` draws from ``U(-1, 1)``.
        jitter: fraction ``f`` of the half-size by which the point may leave the centre.

    Returns:
        ``(N, 2)`` points ``[x, y]``, each inside its box (clamped against float rounding).
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    u = np.asarray(u, dtype=np.float64).reshape(-1, 2)
    x, y, w, h = b.T
    px = np.clip(x + w / 2 + jitter * u[:, 0] * w / 2, x, x + w)
    py = np.clip(y + h / 2 + jitter * u[:, 1] * h / 2, y, y + h)
    return np.stack([px, py], axis=1)


def add_points(ds: CocoDataset, jitter: float, seed: int) -> tuple[CocoDataset, dict[str, Any]]:
    """A copy of ``ds`` whose object annotations carry ``point`` (see the module docstring)."""
    groups = grouped(ds)
    out: dict[int, CocoAnnotation] = {}
    objects: list[CocoAnnotation] = []
    draws: list[npt.NDArray[np.float64]] = []
    for img in ds.images:
        anns = groups.get(img.id, [])
        mine = [a for a in anns if not a.iscrowd]
        out.update((a.id, a) for a in anns if a.iscrowd)
        if mine:
            objects += mine
            draws.append(stream(seed, Purpose.POINTS, img.id).uniform(-1.0, 1.0,
                                                                       size=(len(mine), 2)))
    n_crowd, n_points = len(out), len(objects)
    if objects:
        points = box_points(boxes_array(objects), np.concatenate(draws), jitter).tolist()
        for a, p in zip(objects, points, strict=True):
            out[a.id] = CocoAnnotation(id=a.id, image_id=a.image_id, category_id=a.category_id,
                                       bbox=a.bbox, area=a.area, iscrowd=a.iscrowd,
                                       extra={**a.extra, "point": p})
    counts = {"images": len(ds.images), "annotations": len(out), "points": n_points,
              "ignore_regions_without_point": n_crowd}
    variant = {"protocol": "points", "jitter": jitter, "seed": seed}
    return derived(ds, annotations=in_file_order(ds, out), variant=variant), counts
