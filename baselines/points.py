"""Geometry of point supervision: proposal bags, MIL merging, PCA orientation, rotated boxes.

Shared by the point-supervised methods (:mod:`baselines.methods.p2bnet`, ``point_teacher``,
``pointobb_v2``, ``pointobb_v3``, ``point2rbox_v3``); numpy, scipy and OpenCV only
(no torch at import), so every mechanism is unit-testable on hand-made values.

Conventions: horizontal boxes are ``[x0, y0, x1, y1]``; rotated boxes are
``[cx, cy, w, h, theta]`` with ``theta`` in radians, counter-clockwise in image coordinates
(x right, y down) from the x axis to the box's ``w`` side — the ``le90``-style convention of
MMRotate, angle wrapped to ``[-pi/2, pi/2)``. Rotated-box corners come from
:func:`cv2.boxPoints` (a kept library), never hand-written trigonometry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from tinyset_builder.io import read_json

F32 = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class PointSample:
    """One training image of a points variant.

    Attributes:
        image_id: COCO image id.
        path: the image file.
        points: ``(N, 2)`` annotated points (the only supervision the methods use).
        true_boxes: ``(N, 4)`` the boxes the points came from, when the file keeps them (the
            ``points-center`` variant does): read **only** to measure pseudo-box quality.
    """

    image_id: int
    path: Path
    points: F32
    true_boxes: F32 | None


def load_point_samples(coco_json: Path, data_dir: Path) -> tuple[list[PointSample], dict[str, int]]:
    """Read a points variant: each non-crowd annotation's ``point`` (centre of ``bbox`` if absent).

    Crowd / ignore regions carry no point and are skipped (counted).
    """
    from baselines.data import image_path

    coco = read_json(coco_json)
    by_image: dict[int, list[dict]] = {}
    for a in coco.get("annotations", []):
        by_image.setdefault(int(a["image_id"]), []).append(a)
    counts = {"images": 0, "points": 0, "crowd_skipped": 0, "points_from_bbox_centre": 0}
    out = []
    for img in coco.get("images", []):
        pts, boxes = [], []
        for a in by_image.get(int(img["id"]), []):
            if a.get("iscrowd", 0):
                counts["crowd_skipped"] += 1
                continue
            x, y, w, h = (float(v) for v in a.get("bbox", (0, 0, 0, 0)))
            if "point" in a:
                pts.append([float(a["point"][0]), float(a["point"][1])])
            else:
                pts.append([x + w / 2, y + h / 2])
                counts["points_from_bbox_centre"] += 1
            boxes.append([x, y, x + w, y + h])
        split = img.get("split") or "train"
        true = np.asarray(boxes, np.float32).reshape(-1, 4)
        has_true = bool(len(true)) and bool(np.all(true[:, 2:] > true[:, :2]))
        out.append(PointSample(int(img["id"]), image_path(data_dir, img["file_name"], split),
                               np.asarray(pts, np.float32).reshape(-1, 2),
                               true if has_true else None))
        counts["images"] += 1
        counts["points"] += len(pts)
    return out, counts


# --------------------------------------------------------------------------------------------
# Proposal bags (P2BNet) and MIL merging
# --------------------------------------------------------------------------------------------

def point_bags(points: F32, scales: Sequence[float], ratios: Sequence[float]) -> F32:
    """P2BNet's coarse bag: one box per (scale, ratio) centred on each point.

    A proposal of scale ``s`` and ratio ``r`` has width ``s·r`` and height ``s/r``.

    Returns:
        ``(N, len(scales)·len(ratios), 4)`` xyxy boxes, scale-major order.
    """
    wh = np.asarray([[s * r, s / r] for s in scales for r in ratios], np.float32)
    centres = np.asarray(points, np.float32).reshape(-1, 1, 2)
    half = wh[None] / 2
    return np.concatenate([centres - half, centres + half], axis=-1).astype(np.float32)


def fine_bags(boxes: F32, ratios: Sequence[float], shakes: Sequence[float]) -> F32:
    """P2BNet's refinement bag around each coarse box.

    Width and height are rescaled independently by every pair of ``ratios``; each such box is
    also shifted left, right, up and down by ``shake`` times its own width / height.

    Returns:
        ``(N, len(ratios)² · (1 + 4·len(shakes)), 4)`` xyxy boxes.
    """
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    out = []
    for rw in ratios:
        for rh in ratios:
            ww, hh = w * rw, h * rh
            shifts = [(0.0, 0.0)]
            for s in shakes:
                shifts += [(-s, 0.0), (s, 0.0), (0.0, -s), (0.0, s)]
            for sx, sy in shifts:
                x, y = cx + sx * ww, cy + sy * hh
                out.append(np.stack([x - ww / 2, y - hh / 2, x + ww / 2, y + hh / 2], -1))
    return np.stack(out, axis=1).astype(np.float32)


def mil_weights(cls_logits: F32, ins_logits: F32) -> F32:
    """P2BNet's per-proposal weight: ``sigmoid(cls) × softmax_over_bag(ins)``.

    Args:
        cls_logits, ins_logits: ``(N, M)`` logits of the object class for each bag's M proposals.
    """
    cls = 1.0 / (1.0 + np.exp(-np.asarray(cls_logits, np.float64)))
    ins = np.asarray(ins_logits, np.float64)
    ins = np.exp(ins - ins.max(axis=1, keepdims=True))
    ins /= ins.sum(axis=1, keepdims=True)
    return (cls * ins).astype(np.float32)


def mil_merge(bags: F32, weights: F32, k: int) -> F32:
    """Pseudo box of each bag: the weight-normalised average of its ``k`` best proposals."""
    bags = np.asarray(bags, np.float32)
    w = np.asarray(weights, np.float64)
    k = max(1, min(k, w.shape[1]))
    top = np.argsort(-w, axis=1, kind="stable")[:, :k]
    tw = np.take_along_axis(w, top, axis=1)
    tw = tw / np.maximum(tw.sum(axis=1, keepdims=True), 1e-12)
    chosen = np.take_along_axis(bags, top[..., None], axis=1)
    return (chosen * tw[..., None]).sum(axis=1).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Rotated boxes
# --------------------------------------------------------------------------------------------

def wrap_angle(theta: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Angle wrapped into ``[-pi/2, pi/2)`` (a box is symmetric under a half turn)."""
    t = np.asarray(theta, np.float64)
    return (t + np.pi / 2) % np.pi - np.pi / 2


def rbox_polygons(rboxes: F32) -> F32:
    """``(N, 4, 2)`` corners of rotated boxes ``[cx, cy, w, h, theta]`` (via cv2.boxPoints).

    OpenCV's angle is in degrees with the same image-coordinate sense as ours.
    """
    import cv2

    r = np.asarray(rboxes, np.float64).reshape(-1, 5)
    return np.asarray([cv2.boxPoints(((cx, cy), (w, h), np.degrees(t)))
                       for cx, cy, w, h, t in r], np.float32).reshape(-1, 4, 2)


def rbox_to_hbox(rboxes: F32) -> F32:
    """Enclosing horizontal ``[x0, y0, x1, y1]`` of rotated boxes (what TinySet evaluates)."""
    p = rbox_polygons(rboxes)
    if not len(p):
        return np.zeros((0, 4), np.float32)
    return np.concatenate([p.min(axis=1), p.max(axis=1)], axis=1).astype(np.float32)


def hbox_to_polygon(boxes: F32) -> F32:
    """``(N, 8)`` DOTA polygons ``x1 y1 … x4 y4`` (clockwise from the top-left) of xyxy boxes."""
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    x0, y0, x1, y1 = b.T
    return np.stack([x0, y0, x1, y0, x1, y1, x0, y1], axis=1).astype(np.float32)


def mask_rbox(mask: npt.NDArray[np.bool_]) -> F32 | None:
    """Minimum-area rotated box of a binary mask's pixels (cv2.minAreaRect), or None if empty.

    Pixels are unit squares: the rectangle is fitted to their corners, so a one-pixel mask gives
    a 1×1 box.
    """
    import cv2

    ys, xs = np.nonzero(mask)
    if not len(xs):
        return None
    corners = np.concatenate([np.stack([xs + dx, ys + dy], 1) for dx in (0, 1) for dy in (0, 1)])
    (cx, cy), (w, h), deg = cv2.minAreaRect(corners.astype(np.float32))
    return np.asarray([cx, cy, w, h, float(wrap_angle(np.radians(deg)))], np.float32)


# --------------------------------------------------------------------------------------------
# Class probability maps (PointOBB-v2)
# --------------------------------------------------------------------------------------------

def pca_orientation(prob: npt.NDArray[np.floating]) -> tuple[float, float, float]:
    """Major-axis angle of a probability window by weighted PCA about the window's centre.

    The window is centred on the annotated point (as PointOBB-v2 centres its ``pca_length``
    rectangle on it); each cell's offset from the centre is weighted by its probability.

    Returns:
        ``(theta, var_major, var_minor)``: the major axis' angle in ``[-pi/2, pi/2)`` (image
        coordinates) and the two eigenvalues of the weighted covariance.
    """
    p = np.asarray(prob, np.float64)
    h, w = p.shape
    ys, xs = np.mgrid[0:h, 0:w]
    dx, dy = xs - (w - 1) / 2, ys - (h - 1) / 2
    total = max(p.sum(), 1e-12)
    cov = np.array([[np.sum(p * dx * dx), np.sum(p * dx * dy)],
                    [np.sum(p * dx * dy), np.sum(p * dy * dy)]]) / total
    vals, vecs = np.linalg.eigh(cov)
    major = vecs[:, 1]
    theta = float(wrap_angle(np.arctan2(major[1], major[0])))
    return theta, float(vals[1]), float(vals[0])


def axis_extent(prob: npt.NDArray[np.floating], centre: tuple[float, float],
                direction: tuple[float, float], thr: float, max_len: float,
                step: float = 0.5) -> float:
    """Distance from ``centre`` along ``direction`` to where the map first falls below ``thr``.

    The map is sampled bilinearly (scipy.ndimage.map_coordinates); the walk stops at ``max_len``
    or the map's border (PointOBB-v2's boundary search along each principal axis).
    """
    from scipy.ndimage import map_coordinates

    d = np.asarray(direction, np.float64)
    d /= max(np.linalg.norm(d), 1e-12)
    t = np.arange(step, max_len + step / 2, step)
    xs, ys = centre[0] + t * d[0], centre[1] + t * d[1]
    vals = map_coordinates(np.asarray(prob, np.float64), [ys, xs], order=1, mode="constant",
                           cval=0.0)
    below = np.nonzero(vals < thr)[0]
    return float(t[below[0]] - step if len(below) else t[-1])


# --------------------------------------------------------------------------------------------
# Progressive label assignment (Point2RBox-v3) and masks
# --------------------------------------------------------------------------------------------

def assign_levels(sizes: npt.ArrayLike, bounds: Sequence[float]) -> npt.NDArray[np.int64]:
    """Pyramid level of each object from its current size estimate.

    ``bounds`` are the upper size limits of every level but the last (e.g. ``(16, 32, 64)`` for
    P2–P5): an object of size ``s`` goes to the first level with ``s <= bound``, the largest
    ones to the last level (FCOS-style regress ranges, scaled to tiny objects).
    """
    return np.searchsorted(np.asarray(bounds, np.float64), np.asarray(sizes, np.float64),
                           side="left").astype(np.int64)


def watershed_regions(image: npt.NDArray[np.floating], points: F32, radius: float,
                      background: npt.NDArray[np.bool_] | None = None) -> npt.NDArray[np.int32]:
    """Watershed of the colour image seeded at the points (Point2RBox's Voronoi watershed).

    Markers: label ``i + 1`` at point ``i``; label ``N + 1`` (background) on every pixel farther
    than ``radius`` from all points and on ``background`` (e.g. Voronoi ridges between points,
    which keep neighbours apart as Point2RBox's Voronoi watershed does). As in the authors' code,
    the image is stretched to 8 bits, median-blurred (3 × 3) and flooded by ``cv2.watershed``,
    which follows colour edges: an object that differs from its ground in hue but not in
    brightness still stops its region (a grey-level gradient lets it spill). cv2 marks the
    pixels where regions meet with ``-1``; they belong to no point.

    Args:
        image: ``(H, W, 3)`` or ``(H, W)`` image, any value range.

    Returns:
        an ``int32`` label image: ``i + 1`` for point ``i``, ``N + 1`` background, ``-1`` borders.
    """
    import cv2
    from scipy.ndimage import distance_transform_edt

    img = np.asarray(image, np.float64)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    lo, hi = img.min(), img.max()
    u8 = ((img - lo) / max(hi - lo, 1e-12) * 255).astype(np.uint8)
    h, w = u8.shape[:2]
    markers = np.zeros((h, w), np.int32)
    seeds = np.ones((h, w), bool)
    for i, (x, y) in enumerate(np.asarray(points, np.float64).reshape(-1, 2)):
        xi, yi = int(np.clip(np.floor(x), 0, w - 1)), int(np.clip(np.floor(y), 0, h - 1))
        seeds[yi, xi] = False
        markers[yi, xi] = i + 1
    far = distance_transform_edt(seeds) > radius
    if background is not None:
        far |= np.asarray(background, bool)
    markers[far & (markers == 0)] = len(points) + 1
    return cv2.watershed(np.ascontiguousarray(cv2.medianBlur(u8, 3)), markers)


def nearest_neighbour_distance(points: F32) -> F32:
    """Distance from each point to its nearest other point (inf when alone)."""
    from scipy.spatial import cKDTree

    p = np.asarray(points, np.float64).reshape(-1, 2)
    if len(p) < 2:
        return np.full(len(p), np.inf, np.float32)
    d, _ = cKDTree(p).query(p, k=2)
    return d[:, 1].astype(np.float32)


# --------------------------------------------------------------------------------------------
# Pseudo-box quality
# --------------------------------------------------------------------------------------------

def paired_iou(a: F32, b: F32) -> F32:
    """IoU of ``a[i]`` with ``b[i]`` (xyxy), elementwise."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    iw = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    inter = iw * ih
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return (inter / np.maximum(area(a) + area(b) - inter, 1e-12)).astype(np.float32)


def pseudo_quality(pseudo: Sequence[F32], true: Sequence[F32 | None]) -> dict[str, float | int]:
    """Mean IoU of pseudo boxes with the true ones, overall and by true-box size, and size ratio.

    Size bins follow the AI-TOD ranges on ``sqrt(area)``: very tiny < 8, tiny 8–16, small 16–32,
    medium ≥ 32. ``size_ratio`` is the median of ``sqrt(area_pseudo / area_true)`` (> 1: pseudo
    boxes too large).
    """
    ps = [p for p, t in zip(pseudo, true, strict=True) if t is not None and len(t)]
    ts = [t for t in true if t is not None and len(t)]
    if not ps:
        return {"pseudo_boxes_scored": 0}
    p, t = np.concatenate(ps), np.concatenate(ts)
    iou = paired_iou(p, t)
    side_t = np.sqrt(np.maximum((t[:, 2] - t[:, 0]) * (t[:, 3] - t[:, 1]), 1e-9))
    side_p = np.sqrt(np.maximum((p[:, 2] - p[:, 0]) * (p[:, 3] - p[:, 1]), 0.0))
    out: dict[str, float | int] = {"pseudo_boxes_scored": len(iou),
                                   "pseudo_mean_iou": round(float(iou.mean()), 4),
                                   "pseudo_iou_ge_0.5": round(float((iou >= 0.5).mean()), 4),
                                   "pseudo_iou_ge_0.25": round(float((iou >= 0.25).mean()), 4),
                                   "pseudo_size_ratio_median":
                                       round(float(np.median(side_p / side_t)), 3)}
    for name, lo, hi in (("vt", 0, 8), ("t", 8, 16), ("s", 16, 32), ("m", 32, np.inf)):
        sel = (side_t >= lo) & (side_t < hi)
        if sel.any():
            out[f"pseudo_mean_iou_{name}"] = round(float(iou[sel].mean()), 4)
    return out
