"""The large-object filter (paper, section III): keep the dataset about small objects.

An output image is dropped when the *union* of its large objects covers more than ``max_fraction``
(40 %) of the image. The union, not the sum, so two overlapping large boxes are not counted twice.

Definitions (recorded in ``build.json``'s options):

- a *large object* is an object (a label, or a label made ignore because a tile cut it; not a
  source's own ignore/crowd region, which is not an object) whose box in the output image has
  area ``w·h > large_area`` (default 96², COCO's "large");
- the *image area* is the part of the output that shows the original image (for a padded
  image, its ``w × h`` before padding; for a full tile, 1024²), so padding never dilutes the share;
- the test is strict: exactly 40 % is kept, anything above is dropped;
- **scope** ``"tile"`` (default): the test runs on each output image (window) after cutting, so a
  large original image loses only the windows its large objects dominate and keeps the rest of
  its small objects. Scope ``"image"`` is the paper's wording (section III filters images before
  cropping): the test runs once on the whole original image (in the pixels it is cut in, i.e.
  after a manifest downscale or letterbox), and a rejected image loses every window. The default
  is per tile because TinySet's large sources are aerial scenes of thousands of small objects
  where a few big structures would otherwise throw away a whole scene (``docs/build.md``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

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
    scope: Literal["tile", "image"] = "tile"

    def __post_init__(self) -> None:
        if self.large_area < 0:
            raise TinysetError(f"large_area must be >= 0, got {self.large_area}")
        if not 0.0 <= self.max_fraction <= 1.0:
            raise TinysetError(f"max_fraction must be in [0, 1], got {self.max_fraction}")
        if self.scope not in ("tile", "image"):
            raise TinysetError(f"large-object filter scope must be tile or image, got "
                               f"{self.scope!r}")

    def for_image(self, boxes_xyxy: npt.NDArray[np.float64], iscrowd: npt.NDArray[np.int64],
                  width: float, height: float) -> LargeObjectFilter:
        """The filter to apply to the windows of one original image.

        Scope ``"tile"``: this filter itself (each window is tested). Scope ``"image"``: an
        :class:`ImageDecision` holding the verdict on the whole image, ``boxes_xyxy`` and
        ``width × height`` being in the pixels the image is cut in; a source's own ignore regions
        (``iscrowd = 1``) are no objects, as per tile.
        """
        if self.scope == "tile":
            return self
        objects = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)[
            np.asarray(iscrowd).reshape(-1) == 0]
        covered = self.covered_fraction(objects, float(width) * float(height))
        return ImageDecision(large_area=self.large_area, max_fraction=self.max_fraction,
                             scope="image", rejected=covered > self.max_fraction,
                             covered=round(covered, 6))

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

    def to_dict(self) -> dict[str, object]:
        """The options as a plain dict (for ``build.json`` and the tasks' fingerprints).

        ``scope`` appears only when it is ``"image"``, so a default build's bytes are those of
        builds made before the option existed.
        """
        d = asdict(self)
        if d["scope"] == "tile":
            del d["scope"]
        return d


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageDecision(LargeObjectFilter):
    """The per-image filter's verdict on one original image, applied to each of its windows.

    Attributes:
        rejected: the whole image failed the test (every window is dropped as large objects).
        covered: the share of the image its large objects cover (recorded in the fingerprint).
    """

    rejected: bool = False
    covered: float = 0.0

    def rejects(self, boxes_xyxy: npt.NDArray[np.float64], image_area: float) -> bool:
        """The image's verdict, whatever the window."""
        return self.rejected

    def to_dict(self) -> dict[str, object]:
        """The rule and the verdict."""
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
