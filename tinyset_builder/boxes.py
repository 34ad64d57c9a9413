"""Box conventions and conversions (pure Python and numpy, no framework).

Names carry the convention: ``xywh`` is COCO's ``[x, y, width, height]`` with ``(x, y)`` the
top-left corner in absolute pixels; ``xyxy`` is ``[x0, y0, x1, y1]``; ``cxcywh_norm`` is YOLO's
centre and size divided by the image width and height. Pixel coordinates are continuous: a box
covering pixel columns 3..5 inclusive is ``x0=3, x1=6``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

XYWH = tuple[float, float, float, float]
XYXY = tuple[float, float, float, float]


def xywh_to_xyxy(box: Sequence[float]) -> XYXY:
    """``[x, y, w, h]`` → ``[x0, y0, x1, y1]``."""
    x, y, w, h = box
    return (x, y, x + w, y + h)


def xyxy_to_xywh(box: Sequence[float]) -> XYWH:
    """``[x0, y0, x1, y1]`` → ``[x, y, w, h]``."""
    x0, y0, x1, y1 = box
    return (x0, y0, x1 - x0, y1 - y0)


def cxcywh_norm_to_xywh(box: Sequence[float], width: int, height: int) -> XYWH:
    """YOLO's normalised ``[cx, cy, w, h]`` → absolute ``[x, y, w, h]`` in that image."""
    cx, cy, w, h = box
    return ((cx - w / 2) * width, (cy - h / 2) * height, w * width, h * height)


def xywh_to_cxcywh_norm(box: Sequence[float], width: int, height: int) -> XYWH:
    """Absolute ``[x, y, w, h]`` → YOLO's normalised ``[cx, cy, w, h]``."""
    x, y, w, h = box
    return ((x + w / 2) / width, (y + h / 2) / height, w / width, h / height)


def polygon_to_xywh(coords: Sequence[float]) -> XYWH:
    """Flat polygon ``[x1, y1, x2, y2, ...]`` → its horizontal bounding box ``[x, y, w, h]``."""
    xs, ys = coords[0::2], coords[1::2]
    x0, y0 = min(xs), min(ys)
    return (x0, y0, max(xs) - x0, max(ys) - y0)


def clip_xywh(box: Sequence[float], width: float, height: float) -> XYWH:
    """Clip ``[x, y, w, h]`` to the image ``[0, width] × [0, height]``; may return w or h ≤ 0.

    A box already inside is returned unchanged: the round trip through corners is not exact in
    floating point (``50.5 + 79.73 - 50.5 != 79.73``) and would alter annotated values.
    """
    x0, y0, x1, y1 = xywh_to_xyxy(box)
    if x0 >= 0 and y0 >= 0 and x1 <= width and y1 <= height:
        return (box[0], box[1], box[2], box[3])
    x0, x1 = min(max(x0, 0.0), width), min(max(x1, 0.0), width)
    y0, y1 = min(max(y0, 0.0), height), min(max(y1, 0.0), height)
    return (x0, y0, x1 - x0, y1 - y0)


def xywh_to_xyxy_array(boxes: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Vectorised :func:`xywh_to_xyxy` over an ``(N, 4)`` array."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).copy()
    b[:, 2:] += b[:, :2]
    return b


def xyxy_to_xywh_array(boxes: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Vectorised :func:`xyxy_to_xywh` over an ``(N, 4)`` array."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).copy()
    b[:, 2:] -= b[:, :2]
    return b
