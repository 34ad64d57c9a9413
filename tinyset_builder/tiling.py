"""Crop-or-pad: cut an image into 1024×1024 windows and move its boxes into each window.

The rule (paper, section III; conventions of other tilers in ``reference/ecosystem.md`` §3):

- **Grid.** Per axis, a side no longer than the tile gives one window covering the whole side
  (the output is padded); a longer side gives windows ``tile`` long every ``tile - overlap``
  pixels, the last one *snapped* back so it ends exactly at the border (SAHI, DOTA devkit and
  mmrotate all snap; none runs past the image). So an image with both sides ≤ 1024 becomes one
  padded output, and a 1920×800 image becomes three 1024-wide windows starting at x = 0, 824
  and 896 (the second window ends 72 px short of the border, so a third, snapped one is
  needed), each padded vertically.
- **Padding** goes to the right and bottom with a constant value, so output pixel ``(u, v)`` is
  original pixel ``(x0 + u / scale, y0 + v / scale)``: a prediction maps back with the image's
  ``window`` and ``scale`` alone.
- **Letterbox** (option, off by default): an image whose longer side is shorter than the tile is
  first resized (Lanczos) so that side is exactly the tile, then padded like any other; its
  ``scale`` records the factor. Off by default because enlarging would change the very object
  sizes the benchmark is about (``docs/build.md`` has the measured effect).
- **Test split, disjoint** (option, off by default): test images are cut into non-overlapping
  windows (stride = tile, the last window padded rather than snapped back), so no test object is
  evaluated twice; by default the test split is cut like train (see ``docs/build.md``).
- **Boxes** are clipped to the window. A box that keeps at least ``min_visible`` of its area
  (default 0.5) stays a label; one that keeps less becomes an ignore region (``iscrowd=1``) rather
  than a wrong label (DOTA's "difficult" instead of mmrotate's silent drop). A source's own ignore
  regions stay ignore regions.

Geometry is vectorised with numpy over all windows of an image at once
(:func:`boxes_in_windows`): an image costs a handful of array operations, whatever the number of
windows and boxes, which matters for crowded sources (SKU110K, JHU-CROWD++) cut into many tiles.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from itertools import pairwise
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from tinyset_builder.errors import TinysetError

if TYPE_CHECKING:
    from PIL import Image

Window = tuple[int, int, int, int]


@dataclass(frozen=True, slots=True, kw_only=True)
class TilingOptions:
    """Parameters of crop-or-pad; all of them are recorded in ``build.json``.

    Attributes:
        tile: output side in pixels (1024 in the paper).
        overlap: pixels shared by neighbouring windows (DOTA/mmrotate's 200-px gap).
        min_visible: a clipped box keeping less than this fraction of its area becomes ignore.
        pad_value: the constant grey level of padding (0 = black, as DOTA devkit and AI-TOD).
        keep_empty: keep output images with no object label (only ignore regions or nothing).
        letterbox: resize an image whose longer side is below ``tile`` up to ``tile`` before
            padding (:meth:`image_scale`).
        test_disjoint: cut test images into non-overlapping windows (:meth:`windows`).
    """

    tile: int = 1024
    overlap: int = 200
    min_visible: float = 0.5
    pad_value: int = 0
    keep_empty: bool = False
    letterbox: bool = False
    test_disjoint: bool = False

    def __post_init__(self) -> None:
        if self.tile <= 0:
            raise TinysetError(f"tile size must be > 0, got {self.tile}")
        if not 0 <= self.overlap < self.tile:
            raise TinysetError(f"overlap must be in [0, tile), got {self.overlap}")
        if not 0.0 < self.min_visible <= 1.0:
            raise TinysetError(f"min_visible must be in (0, 1], got {self.min_visible}")
        if not 0 <= self.pad_value <= 255:
            raise TinysetError(f"pad_value must be in [0, 255], got {self.pad_value}")

    def to_dict(self) -> dict[str, object]:
        """The options as a plain dict (for ``build.json`` and the tasks' fingerprints).

        ``letterbox`` and ``test_disjoint`` appear only when switched on, so a default build's
        ``build.json`` and result fingerprints are those of builds made before the two options
        existed (byte-identical output; an interrupted older build still resumes).
        """
        d = asdict(self)
        for name in _LATER_OPTIONS:
            if not d[name]:
                del d[name]
        return d

    def image_scale(self, width: int, height: int, downscale: float = 1.0) -> float:
        """The factor an image of ``width × height`` is resized by before it is cut.

        ``downscale`` is the source manifest's factor (1 = none). With ``letterbox``, an image
        whose longer side (after ``downscale``) is below the tile is enlarged so that side is
        exactly the tile; every other image keeps ``downscale``.

        Example:
            >>> TilingOptions(letterbox=True).image_scale(512, 256)
            2.0
            >>> TilingOptions(letterbox=True).image_scale(2000, 300)
            1.0
            >>> TilingOptions().image_scale(512, 256)
            1.0
        """
        longer = max(width, height)
        if not (self.letterbox and longer * downscale < self.tile):
            return downscale
        scale = self.tile / longer
        # Never past the tile by a rounding error: a box on the far border stays whole. (The
        # shorter side is resized to round(side * scale) pixels, so a box on its border may
        # lose up to half a pixel, as with a manifest downscale.)
        while longer * scale > self.tile:
            scale = math.nextafter(scale, 0.0)
        return scale

    def windows(self, width: int, height: int, split: str = "train") -> list[Window]:
        """The windows of an image of ``width × height`` (already resized) in ``split``."""
        if self.test_disjoint and split == "test":
            return window_grid(width, height, self.tile, 0, snap=False)
        return window_grid(width, height, self.tile, self.overlap)


#: Options added after the first builds; recorded only when on (see ``TilingOptions.to_dict``).
_LATER_OPTIONS = ("letterbox", "test_disjoint")


def axis_starts(size: int, tile: int, overlap: int, *, snap: bool = True) -> list[int]:
    """Window start positions along one axis of ``size`` pixels.

    Example:
        >>> axis_starts(1920, 1024, 200)
        [0, 824, 896]
        >>> axis_starts(3000, 1024, 200)
        [0, 824, 1648, 1976]
        >>> axis_starts(700, 1024, 200)
        [0]
        >>> axis_starts(1920, 1024, 0, snap=False)
        [0, 1024]

    ``snap=False`` does not move the last window back: it starts on the stride and is cut short
    at the border (its output is padded), so no two windows share a pixel when ``overlap`` is 0.
    """
    if size <= tile:
        return [0]
    stride = tile - overlap
    if not snap:
        return list(range(0, size, stride))
    starts = list(range(0, size - tile, stride))
    starts.append(size - tile)  # snap the last window to the border
    return starts


def window_grid(width: int, height: int, tile: int = 1024, overlap: int = 200, *,
                snap: bool = True) -> list[Window]:
    """Windows ``(x0, y0, x1, y1)`` covering a ``width × height`` image, row-major.

    Windows never run past the image; a side shorter than ``tile`` gives windows shorter than
    ``tile`` on that axis (the output is padded). ``snap`` as in :func:`axis_starts`.
    """
    xs = axis_starts(width, tile, overlap, snap=snap)
    ys = axis_starts(height, tile, overlap, snap=snap)
    return [(x0, y0, min(x0 + tile, width), min(y0 + tile, height)) for y0 in ys for x0 in xs]


def _clip(b: npt.NDArray[np.float64], lo: npt.NDArray[np.float64],
          hi: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """The one clipping formula: each box of ``b (N, 4)`` to its window.

    ``lo = (x0, y0, x0, y0)`` and ``hi = (x1, y1, x1, y1)`` of the window, one row per box or one
    for all. :func:`clip_to_window` and :func:`boxes_in_windows` both come here, so a box gets
    the same floats whichever way it is cut. Returns the clipped boxes relative to their
    window's top-left corner, and the share of each box's area inside its window (0 if none).
    """
    # A coordinate is replaced only when strictly outside (as np.clip does with scalar bounds;
    # with array bounds it may turn a -0.0 on the border into 0.0, and the bytes would change).
    c = np.where(b < lo, lo, np.where(b > hi, hi, b))
    inter = np.clip(c[:, 2] - c[:, 0], 0, None) * np.clip(c[:, 3] - c[:, 1], 0, None)
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    visible = np.divide(inter, area, out=np.zeros_like(inter), where=area > 0)
    return c - lo, visible


def clip_to_window(boxes_xyxy: npt.NDArray[np.float64], window: Window,
                   ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Clip ``(N, 4)`` xyxy boxes to ``window`` and express them in window coordinates.

    Returns:
        ``(clipped, visible)``: the clipped boxes relative to the window's top-left corner, and
        the fraction of each box's own area that lies inside the window (0 for boxes outside it).
    """
    w = np.asarray(window, dtype=np.float64)
    return _clip(np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4), w[[0, 1, 0, 1]],
                 w[[2, 3, 2, 3]])


@dataclass(frozen=True, slots=True)
class TileBoxes:
    """The boxes of one window.

    Attributes:
        index: row of each box in the input arrays.
        xyxy: the clipped box in window pixels.
        iscrowd: 1 for ignore regions (the source's own, or made ignore here).
        whole: True when the box lies entirely inside the window (not clipped).
        made_ignore: True when a label became an ignore region because too little of it is left.
    """

    index: npt.NDArray[np.int64]
    xyxy: npt.NDArray[np.float64]
    iscrowd: npt.NDArray[np.int64]
    whole: npt.NDArray[np.bool_]
    made_ignore: npt.NDArray[np.bool_]


#: Window × box pairs tested at once by :func:`boxes_in_windows` (bounds its temporary memory:
#: a few bytes per pair, so ~10 MB however many windows and boxes an image has).
PAIRS_PER_CHUNK = 1 << 21


def boxes_in_windows(boxes_xyxy: npt.NDArray[np.float64], iscrowd: npt.NDArray[np.int64],
                     windows: Sequence[Window], min_visible: float, *,
                     decimals: int | None = None) -> list[TileBoxes]:
    """Select, clip and classify the boxes that overlap each window (positive area inside it).

    Vectorised over windows and boxes together: the windows × boxes overlap test is one array
    comparison (in chunks of :data:`PAIRS_PER_CHUNK`), and only the overlapping pairs are
    clipped, so a crowded image costs a few array operations rather than a few per window.

    Args:
        boxes_xyxy: ``(N, 4)`` boxes in the pixels of the image being cut.
        iscrowd: ``(N,)`` 0/1, 1 for a source's own ignore regions.
        windows: the windows, each ``(x0, y0, x1, y1)``.
        min_visible: a label keeping less than this share of its area becomes ignore.
        decimals: round the clipped boxes to this many decimals (downscaled images). A box
            that rounding squeezes to zero width or height is left out.

    Returns:
        One :class:`TileBoxes` per window, in the order of ``windows``; boxes in input order.
    """
    b = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    crowd_in = np.asarray(iscrowd, dtype=np.int64).reshape(-1)
    win = np.asarray(windows, dtype=np.float64).reshape(-1, 4)
    # Candidate pairs: a box overlapping a window in the open sense. Every box with visible area
    # in the window is among them (and the exact test below drops the rest), so this cheap
    # comparison only saves clipping boxes that are far away.
    step = max(1, PAIRS_PER_CHUNK // max(1, len(b)))
    bx0, by0, bx1, by1 = (np.ascontiguousarray(col) for col in b.T)
    wi_parts, bi_parts = [], []
    for s in range(0, len(win), step):
        w = win[s:s + step, :, None]
        near = (bx0 < w[:, 2]) & (bx1 > w[:, 0]) & (by0 < w[:, 3]) & (by1 > w[:, 1])
        wi, bi = np.nonzero(near)  # window-major, boxes in input order within a window
        wi_parts.append(wi + s)
        bi_parts.append(bi)
    wi = np.concatenate(wi_parts) if wi_parts else np.zeros(0, dtype=np.intp)
    bi = np.concatenate(bi_parts) if bi_parts else np.zeros(0, dtype=np.intp)
    orig = np.take(b, bi, axis=0)
    lo = np.take(win[:, [0, 1, 0, 1]], wi, axis=0)
    hi = np.take(win[:, [2, 3, 2, 3]], wi, axis=0)
    clipped, visible = _clip(orig, lo, hi)
    if decimals is not None:
        clipped = np.round(clipped, decimals)
    # A box that rounding squeezed to zero size is not a box (it stays "degenerate").
    keep = (visible > 0) & (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    if not keep.all():
        wi, bi, orig, lo, hi = wi[keep], bi[keep], orig[keep], lo[keep], hi[keep]
        clipped, visible = clipped[keep], visible[keep]
    crowd = np.take(crowd_in, bi)
    made_ignore = (crowd == 0) & (visible < min_visible)
    # "whole" compares the original box with the window, not ``visible == 1``, so that
    # floating-point rounding of the area ratio can never call an untouched box clipped.
    # (Column by column: ten times faster than ``.all(axis=1)`` over the short axis.)
    whole = ((orig[:, 0] >= lo[:, 0]) & (orig[:, 1] >= lo[:, 1]) & (orig[:, 2] <= hi[:, 2])
             & (orig[:, 3] <= hi[:, 3]))
    out_crowd = np.where(made_ignore, 1, crowd)
    index = bi.astype(np.int64)
    bounds = np.searchsorted(wi, np.arange(len(win) + 1)).tolist()
    return [TileBoxes(index=index[a:e], xyxy=clipped[a:e], iscrowd=out_crowd[a:e],
                      whole=whole[a:e], made_ignore=made_ignore[a:e])
            for a, e in pairwise(bounds)]


def boxes_in_window(boxes_xyxy: npt.NDArray[np.float64], iscrowd: npt.NDArray[np.int64],
                    window: Window, min_visible: float) -> TileBoxes:
    """Select, clip and classify the boxes that overlap ``window`` (positive area inside it).

    One window of :func:`boxes_in_windows`.
    """
    return boxes_in_windows(boxes_xyxy, iscrowd, [window], min_visible)[0]


def crop_or_pad(image: Image.Image, window: Window, tile: int = 1024,
                pad_value: int = 0) -> Image.Image:
    """The ``tile × tile`` RGB output for ``window`` of a Pillow image, padded right and bottom.

    Works on the Pillow image rather than a numpy copy: only the tile is copied, so a decoded
    16000×16000 scene is held once (see :mod:`.pipeline`).
    """
    from PIL import Image

    crop = image.crop(window)
    if crop.size == (tile, tile):
        return crop
    out = Image.new("RGB", (tile, tile), (pad_value,) * 3)
    out.paste(crop, (0, 0))
    return out
