"""The large-object filter (paper, section III): keep the dataset about small objects.

An output image is dropped when the *union* of its large objects covers more than ``max_fraction``
(40 %) of the image. The union, not the sum, so two overlapping large boxes are not counted twice.

Definitions (recorded in ``build.json``'s options):

- a *large object* is an object (a label, or a label made ignore because a tile cut it; not a
  source's own ignore/crowd region, which is not an object) whose box in the output image has
  area ``w·h > large_area`` (default 96², COCO's "large");
- the *image area* is the part of the output that shows the original image (for a padded
  image, its ``w × h`` before padding; for a full tile, 1024²), so padding never dilutes the share;
- the test is strict: exactly 40 % is kept, anything above is dropped.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt

from tinyset_builder.errors import TinysetError


@dataclass(frozen=True, slots=True, kw_only=True)
class LargeObjectFilter:
    """Drop an image when its large objects cover more than ``max_fraction`` of it.

    Attributes:
        large_area: an object is large when its box area (output pixels) exceeds this.
        max_fraction: the largest covered share of the image that is still kept.
    """

    large_area: float = 96.0 ** 2
    max_fraction: float = 0.4

    def __post_init__(self) -> None:
        if self.large_area < 0:
            raise TinysetError(f"large_area must be >= 0, got {self.large_area}")
        if not 0.0 <= self.max_fraction <= 1.0:
            raise TinysetError(f"max_fraction must be in [0, 1], got {self.max_fraction}")

    def covered_fraction(self, boxes_xyxy: npt.NDArray[np.float64], image_area: float) -> float:
        """Share of ``image_area`` covered by the union of the large boxes among ``boxes_xyxy``."""
        b = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
        areas = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        large = b[areas > self.large_area]
        if len(large) == 0 or image_area <= 0:
            return 0.0
        return union_area(large) / image_area

    def rejects(self, boxes_xyxy: npt.NDArray[np.float64], image_area: float) -> bool:
        """True when the image must be dropped (covered share strictly above ``max_fraction``)."""
        return self.covered_fraction(boxes_xyxy, image_area) > self.max_fraction

    def to_dict(self) -> dict[str, float]:
        """The options as a plain dict (for ``build.json``)."""
        return asdict(self)


def union_area(boxes_xyxy: npt.NDArray[np.float64]) -> float:
    """Exact area of the union of axis-aligned boxes ``(N, 4)`` in xyxy.

    Coordinate compression: the distinct x and y edges cut the plane into cells, each either
    fully inside some box or outside all; the union is the sum of the covered cells. Only large
    boxes reach this function (a few per image), so the ``O(N · cells)`` cost is negligible.
    """
    b = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    if len(b) == 0:
        return 0.0
    xs = np.unique(b[:, [0, 2]])
    ys = np.unique(b[:, [1, 3]])
    covered = np.zeros((len(ys) - 1, len(xs) - 1), dtype=bool)
    for x0, y0, x1, y1 in b:
        i0, i1 = np.searchsorted(ys, [y0, y1])
        j0, j1 = np.searchsorted(xs, [x0, x1])
        covered[i0:i1, j0:j1] = True
    cell = np.outer(np.diff(ys), np.diff(xs))
    return float((cell * covered).sum())
