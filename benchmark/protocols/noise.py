"""Box noise (``noise-20``, ``noise-40``): DN-TOD's "inaccurate bounding boxes" mode.

Every object box is perturbed; the level ``n`` sets the magnitude, not the fraction of boxes
(reference/methods.md §4.1). With ``u1..u4 ~ U(-1, 1)`` drawn independently per box:

* centre ``cx += n·u1·w``, ``cy += n·u2·h`` (so a shift of up to ±n·w, ±n·h);
* size ``w *= 1 + n·u3``, ``h *= 1 + n·u4``;
* corners clipped to the image ``[0, W] × [0, H]`` (continuous pixel coordinates, see
  :mod:`tinyset_builder.boxes`; DN-TOD's ``W−1`` and integer rounding are artefacts of its
  integer-pixel convention and are not copied);
* a degenerate result (``x1 <= x0`` or ``y1 <= y0``) keeps the original box.

Each annotation keeps its clean box under ``clean_bbox``. Ignore regions (``iscrowd=1``) are not
objects: they are copied unchanged (their ``clean_bbox`` equals ``bbox``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from benchmark.protocols.common import boxes_array, derived, grouped, in_file_order
from benchmark.protocols.rng import Purpose, stream
from tinyset_builder.coco import CocoAnnotation, CocoDataset


def perturb_boxes(boxes: npt.ArrayLike, u: npt.ArrayLike, level: float,
                  width: float | npt.ArrayLike,
                  height: float | npt.ArrayLike) -> tuple[npt.NDArray[np.float64],
                                                          npt.NDArray[np.bool_]]:
    """Apply the noise ``u`` (``(N, 4)`` in ``[-1, 1]``) at ``level`` to ``[x, y, w, h]`` boxes.

    Args:
        boxes: ``(N, 4)`` clean boxes ``[x, y, w, h]``.
        u: ``(N, 4)`` draws ``(u1, u2, u3, u4)`` from ``U(-1, 1)``.
        level: noise level ``n`` (0.2 or 0.4 in the paper).
        width: image width (clip bound), a scalar or one per box.
        height: image height (clip bound), a scalar or one per box.

    Returns:
        The noisy boxes ``(N, 4)`` and a mask of the boxes that were degenerate and so kept.
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    u = np.asarray(u, dtype=np.float64).reshape(-1, 4)
    x, y, w, h = b.T
    cx = x + w / 2 + level * u[:, 0] * w
    cy = y + h / 2 + level * u[:, 1] * h
    nw = w * (1 + level * u[:, 2])
    nh = h * (1 + level * u[:, 3])
    x0 = np.clip(cx - nw / 2, 0.0, width)
    x1 = np.clip(cx + nw / 2, 0.0, width)
    y0 = np.clip(cy - nh / 2, 0.0, height)
    y1 = np.clip(cy + nh / 2, 0.0, height)
    noisy = np.stack([x0, y0, x1 - x0, y1 - y0], axis=1)
    # Width/height are recomputed from the clipped corners, so check them (not x1 > x0) to
    # guarantee the written box has w, h > 0 even when float subtraction underflows.
    degenerate = (noisy[:, 2] <= 0) | (noisy[:, 3] <= 0)
    noisy[degenerate] = b[degenerate]
    return noisy, degenerate


def add_box_noise(ds: CocoDataset, level: float, seed: int) -> tuple[CocoDataset, dict[str, Any]]:
    """The noisy copy of ``ds`` and its counts (see the module docstring for the definition)."""
    groups = grouped(ds)
    out: dict[int, CocoAnnotation] = {}
    objects: list[CocoAnnotation] = []
    draws: list[npt.NDArray[np.float64]] = []
    sizes: list[tuple[int, int, int]] = []
    for img in ds.images:
        anns = groups.get(img.id, [])
        mine = [a for a in anns if not a.iscrowd]
        out.update((a.id, _with_clean(a, a.bbox)) for a in anns if a.iscrowd)
        if mine:
            objects += mine
            draws.append(stream(seed, Purpose.NOISE, img.id).uniform(-1.0, 1.0,
                                                                      size=(len(mine), 4)))
            sizes.append((img.width, img.height, len(mine)))
    crowd = len(out)
    degenerate = np.zeros(0, dtype=bool)
    if objects:
        # One vectorised call for the whole split: per-image numpy calls dominate otherwise.
        w, h, n = np.array(sizes).T
        noisy, degenerate = perturb_boxes(boxes_array(objects), np.concatenate(draws), level,
                                          np.repeat(w, n), np.repeat(h, n))
        for a, box in zip(objects, noisy.tolist(), strict=True):
            out[a.id] = _with_clean(a, tuple(box))
    counts = {"images": len(ds.images), "annotations": len(out),
              "perturbed": int((~degenerate).sum()),
              "kept_original_degenerate": int(degenerate.sum()),
              "ignore_regions_unchanged": crowd}
    variant = {"protocol": "box-noise", "level": level, "seed": seed}
    return derived(ds, annotations=in_file_order(ds, out), variant=variant), counts


def _with_clean(a: CocoAnnotation, bbox: tuple[float, ...]) -> CocoAnnotation:
    extra = dict(a.extra)
    extra["clean_bbox"] = list(a.bbox)
    area = a.area if bbox == a.bbox else -1.0  # -1 recomputes w·h for the noisy box
    return CocoAnnotation(id=a.id, image_id=a.image_id, category_id=a.category_id,
                          bbox=bbox, area=area, iscrowd=a.iscrowd, extra=extra)
