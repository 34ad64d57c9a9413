"""CCPD licence-plate labels, which live in the image *file name* (there are no label files).

A name has seven ``-``-separated fields (CCPD README)::

    0219683908046-89_84-126&620_414&687-414&688_144&694_122&619_392&613-0_0_1_25_25_26_3-36-29.jpg
    area          tilt  box (x1&y1_x2&y2) corners (x&y x4, from bottom-right) plate      bright blur

1. area ratio of plate to image: digits of varying width (2, 4 or 13-14 digits in real lists), so
   it is kept as text and never read as a percentage;
2. tilt ``<horizontal>_<vertical>`` degrees;
3. bounding box, top-left and bottom-right corners;
4. the four plate vertices, starting from the bottom-right one and going clockwise
   (bottom-right, bottom-left, top-left, top-right);
5. plate characters as indices (7 in CCPD2019, 8 for the new-energy plates of CCPD-Green);
6. brightness; 7. blurriness.

Split lists (``splits/train.txt`` and friends) hold one ``<subset>/<name>.jpg`` per line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tinyset_builder.boxes import XYWH, polygon_to_xywh
from tinyset_builder.errors import ErrorPolicy
from tinyset_builder.formats.text import read_lines

Point = tuple[int, int]


@dataclass(frozen=True, slots=True)
class CcpdLabel:
    """The fields of one CCPD file name."""

    area: str
    tilt: tuple[int, int]
    box: tuple[int, int, int, int]
    corners: tuple[Point, Point, Point, Point]
    plate: tuple[int, ...]
    brightness: int
    blur: int

    def corners_xywh(self) -> XYWH:
        """The extent of the four plate vertices as ``[x, y, w, h]``."""
        return polygon_to_xywh([v for point in self.corners for v in point])

    def box_xywh(self) -> XYWH:
        """The name's own bounding box (field 3) as ``[x, y, w, h]``."""
        x1, y1, x2, y2 = self.box
        return (x1, y1, x2 - x1, y2 - y1)


def _point(text: str) -> Point:
    x, y = text.split("&")
    return int(x), int(y)


def parse_ccpd_name(name: str) -> CcpdLabel:
    """Parse a file name (with or without folder and suffix).

    Raises:
        ValueError: with a reason fit for an error message.
    """
    stem = Path(name).stem
    fields = stem.split("-")
    if len(fields) != 7:
        raise ValueError(f"expected 7 '-'-separated fields in a CCPD file name, got "
                         f"{len(fields)}: {stem!r}")
    area, tilt, box, corners, plate, brightness, blur = fields
    try:
        if not area.isdigit():
            raise ValueError(area)
        h_tilt, v_tilt = (int(v) for v in tilt.split("_"))
        top_left, bottom_right = (_point(p) for p in box.split("_"))
        points = tuple(_point(p) for p in corners.split("_"))
        plate_ids = tuple(int(v) for v in plate.split("_"))
        label = CcpdLabel(area, (h_tilt, v_tilt), (*top_left, *bottom_right),
                          points,  # type: ignore[arg-type]  # length checked below
                          plate_ids, int(brightness), int(blur))
    except ValueError:
        raise ValueError(f"malformed CCPD file name {stem!r} (expected "
                         f"area-h_v-x1&y1_x2&y2-x&y_x&y_x&y_x&y-p_a_c_c_c_c_c-bright-blur)"
                         ) from None
    if len(label.corners) != 4:
        raise ValueError(f"expected 4 plate corners, got {len(label.corners)} in {stem!r}")
    if len(label.plate) not in (7, 8):
        raise ValueError(f"expected 7 or 8 plate characters, got {len(label.plate)} in {stem!r}")
    return label


def format_ccpd_name(area: str, tilt: tuple[int, int], box: Sequence[int],
                     corners: Sequence[Point], plate: Sequence[int], brightness: int,
                     blur: int, suffix: str = ".jpg") -> str:
    """A CCPD file name from its fields (used by the synthesizer)."""
    x1, y1, x2, y2 = box
    return "-".join([area, f"{tilt[0]}_{tilt[1]}", f"{x1}&{y1}_{x2}&{y2}",
                     "_".join(f"{x}&{y}" for x, y in corners),
                     "_".join(str(v) for v in plate), str(brightness), str(blur)]) + suffix


def read_split_list(path: Path, policy: ErrorPolicy) -> list[tuple[int, str]]:
    """``(line, relative path)`` of every entry in a split list (the last may lack a newline)."""
    return [(lineno, text.replace("\\", "/")) for lineno, text in read_lines(path, policy)]
