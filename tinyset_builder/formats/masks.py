"""Label images: binary target masks and instance-id maps, turned into boxes.

**Binary masks** (IRSTD-1K, SIRST): 0 is background and any non-zero value a target (threshold
``> 0`` on every channel, so 255-masks, 1-masks and 3-channel copies all work; an alpha channel is
ignored). Each 8-connected component becomes one box; 8-connectivity because a thin diagonal
target painted pixel by pixel must stay one object. Two targets that touch merge into one box:
the mask cannot tell them apart.

**Minimum area.** Components smaller than :data:`MIN_TARGET_AREA` pixels (an isolated single
pixel) are left out and counted by the caller: the usual definition of an infrared small target
(SPIE; Chen et al., TGRS 2014) spans 2 to 81 pixels, so a lone pixel in a hand-painted mask is a
stray brush click far more often than a target.

**Instance-id maps** (TYC): a colour image whose pixel value ``R + 256·G`` is the instance id
(0 = background), the same decoding the official loader does with OpenCV's BGR channels 2 and 1.
Every id present becomes one box (the extent of all its pixels), in ascending id order.

Boxes are integer ``[x, y, w, h]`` in continuous pixel coordinates: a component covering columns
311..314 gives ``x = 311, w = 4``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from tinyset_builder.imageio import read_array
from tinyset_builder.synth.canvas import Box, object_mask

#: Components with fewer pixels than this are not targets (see the module docstring).
MIN_TARGET_AREA = 2


@dataclass(frozen=True, slots=True)
class MaskBox:
    """One component or instance: its box, its pixel count and (for instance maps) its id."""

    xywh: Box
    area: int
    instance_id: int = 0


def read_label_image(path: Path) -> npt.NDArray[np.generic]:
    """Decode a mask with its exact values (no 8-bit normalisation); errors name the file."""
    return read_array(path)


def foreground(mask: npt.NDArray[np.generic]) -> npt.NDArray[np.bool_]:
    """``(H, W)`` bool: any colour channel ``> 0``; a trailing alpha channel is ignored."""
    if mask.ndim == 3:
        if mask.shape[2] in (2, 4):  # LA / RGBA: alpha says nothing about targets
            mask = mask[:, :, :-1]
        return np.asarray((mask > 0).any(axis=2))
    return np.asarray(mask > 0)


def binary_mask_boxes(mask: npt.NDArray[np.generic], *, min_area: int = MIN_TARGET_AREA,
                      ) -> tuple[list[MaskBox], int]:
    """8-connected components of a binary mask → boxes (raster order of their first pixel).

    Returns:
        The kept boxes, and how many components were left out for being below ``min_area``.
    """
    from scipy import ndimage

    labels, n = ndimage.label(foreground(mask), structure=np.ones((3, 3), dtype=bool))
    if n == 0:
        return [], 0
    areas = np.bincount(labels.ravel(), minlength=n + 1)
    boxes, small = [], 0
    for k, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        if areas[k] < min_area:
            small += 1
            continue
        boxes.append(MaskBox(_slice_box(sl), int(areas[k])))
    return boxes, small


def decode_instance_ids(mask: npt.NDArray[np.generic]) -> npt.NDArray[np.int32]:
    """Instance ids ``R + 256·G`` of an RGB(A) map; a single-channel map holds the ids directly."""
    if mask.ndim == 2:
        return mask.astype(np.int32)
    return mask[:, :, 0].astype(np.int32) | (mask[:, :, 1].astype(np.int32) << 8)


def encode_instance_ids(ids: npt.NDArray[np.integer]) -> npt.NDArray[np.uint8]:
    """Inverse of :func:`decode_instance_ids`: ``(H, W)`` ids < 65536 → RGB (B = 0)."""
    if ids.size and (int(ids.min()) < 0 or int(ids.max()) > 0xFFFF):
        raise ValueError("instance ids must lie in [0, 65535]")
    ids16 = ids.astype(np.uint16, copy=False)
    rgb = np.zeros((*ids.shape, 3), dtype=np.uint8)
    rgb[:, :, 0] = ids16 & 0xFF
    rgb[:, :, 1] = ids16 >> 8
    return rgb


def instance_boxes(ids: npt.NDArray[np.integer]) -> list[MaskBox]:
    """One box per non-zero instance id present, in ascending id order.

    Works on the foreground pixels only (sorted by id, then min/max per run), so its cost
    follows the objects, not the image size: TYC's maps are 2048² and mostly background.
    """
    ids = np.asarray(ids)
    flat = ids.ravel()
    where_fg = np.flatnonzero(flat)
    if where_fg.size == 0:
        return []
    values = flat[where_fg]
    order = np.argsort(values, kind="stable")
    values, where_fg = values[order], where_fg[order]
    ys, xs = np.divmod(where_fg, ids.shape[1])
    starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])
    x0, x1 = np.minimum.reduceat(xs, starts), np.maximum.reduceat(xs, starts)
    y0, y1 = np.minimum.reduceat(ys, starts), np.maximum.reduceat(ys, starts)
    areas = np.diff(np.r_[starts, values.size])
    return [MaskBox((int(a), int(b), int(c - a + 1), int(d - b + 1)), int(n), instance_id=int(k))
            for a, b, c, d, n, k in zip(x0, y0, x1, y1, areas, values[starts], strict=True)]


def _slice_box(sl: tuple[slice, ...]) -> Box:
    ys, xs = sl[0], sl[1]
    return (int(xs.start), int(ys.start), int(xs.stop - xs.start), int(ys.stop - ys.start))


def paint_binary_mask(width: int, height: int, boxes: list[Box], ellipses: list[bool], *,
                      value: int = 255) -> npt.NDArray[np.uint8]:
    """A ``(H, W)`` uint8 mask with each object's footprint (as the synth canvas draws it)."""
    mask = np.zeros((height, width), dtype=np.uint8)
    for (x, y, w, h), ellipse in zip(boxes, ellipses, strict=True):
        mask[y:y + h, x:x + w][object_mask(w, h, ellipse=ellipse)] = value
    return mask


def paint_instance_ids(width: int, height: int, boxes: list[Box], ids: list[int],
                       ellipses: list[bool]) -> npt.NDArray[np.uint16]:
    """A ``(H, W)`` id map (ids < 65536); objects must not overlap (TYC's instances never do)."""
    out = np.zeros((height, width), dtype=np.uint16)
    for (x, y, w, h), k, ellipse in zip(boxes, ids, ellipses, strict=True):
        out[y:y + h, x:x + w][object_mask(w, h, ellipse=ellipse)] = k
    return out


def place_speck(mask: npt.NDArray[np.uint8], *, value: int = 255) -> tuple[int, int]:
    """Set one pixel at least 2 px away from every foreground pixel (a synthetic stray click).

    Returns its ``(x, y)``; the first free position in raster order, so it is deterministic.
    """
    from scipy import ndimage

    near = ndimage.binary_dilation(mask > 0, structure=np.ones((5, 5), dtype=bool))
    y, x = (int(v) for v in np.argwhere(~near)[0])
    mask[y, x] = value
    return x, y


def save_label_image(path: Path, pixels: npt.NDArray[np.generic]) -> Path:
    """Save a mask as PNG with fast (level 1) lossless compression; deterministic per pixels."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, compress_level=1)
    return path
