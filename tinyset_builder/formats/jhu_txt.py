"""JHU-CROWD++ head annotations: ``gt/<name>.txt`` per image, plus ``image_labels.txt`` per split.

A gt line is ``x y w h o b`` (space-separated integers): the head's location ``x, y``, its
approximate size ``w, h``, occlusion ``o`` (1 visible, 2 partial, 3 full) and blur ``b`` (0/1).
``image_labels.txt`` is comma-separated: ``name,total_count,scene_type,weather,distractor``
(weather 0 none, 1 fog/haze, 2 rain, 3 snow; distractor 1 = an image without a crowd, whose gt
file is empty).

Where is ``x, y`` on the box? We read it as the head's **centre** (:data:`XY_IS_CENTRE`):
JHU-CROWD++ is a counting dataset whose primary label is a dot on each head (the counting ground
truth is exactly these ``x, y``), with the approximate ``w, h`` drawn around it; the one
published loader that builds boxes from these files (Graviti TensorBay's ``JHU_CROWD``) also
subtracts half the size. It could not be checked against images here: flip the constant if a
look at real images says top-left.

Sample lines: ``512 300 14 16 1 0`` (gt), ``0001,2,stadium,0,0`` (image_labels.txt)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tinyset_builder.boxes import XYWH
from tinyset_builder.errors import ErrorPolicy, where
from tinyset_builder.formats.text import read_lines

#: ``x, y`` is the head centre (True) or the box's top-left corner (False); see the docstring.
XY_IS_CENTRE = True
OCCLUSION_LEVELS = (1, 2, 3)


@dataclass(frozen=True, slots=True)
class JhuHead:
    """One gt line; ``line`` is 1-based for error messages."""

    line: int
    x: float
    y: float
    w: float
    h: float
    occlusion: int
    blur: int

    def to_xywh(self) -> XYWH:
        """The head box ``[x, y, w, h]`` (top-left corner) under :data:`XY_IS_CENTRE`."""
        if XY_IS_CENTRE:
            return (self.x - self.w / 2, self.y - self.h / 2, self.w, self.h)
        return (self.x, self.y, self.w, self.h)


@dataclass(frozen=True, slots=True)
class JhuImageLabel:
    """One ``image_labels.txt`` row."""

    line: int
    name: str
    count: int
    scene: str
    weather: int
    distractor: bool


def read_jhu_gt(path: Path, policy: ErrorPolicy) -> list[JhuHead]:
    """Parse one gt file (an empty file is a valid image without heads)."""
    heads = []
    for lineno, text in read_lines(path, policy):
        fields = text.split()
        if len(fields) != 6:
            policy.fail(where(path, lineno), f"expected 6 space-separated fields 'x y w h o b', "
                                             f"got {len(fields)}: {text!r}")
            continue
        try:
            x, y, w, h = (float(v) for v in fields[:4])
            occlusion, blur = int(fields[4]), int(fields[5])
        except ValueError:
            policy.fail(where(path, lineno), f"non-numeric field in {text!r}")
            continue
        if occlusion not in OCCLUSION_LEVELS or blur not in (0, 1):
            policy.fail(where(path, lineno), f"occlusion must be 1-3 and blur 0/1, got "
                                             f"o={occlusion} b={blur}")
            continue
        heads.append(JhuHead(lineno, x, y, w, h, occlusion, blur))
    return heads


def read_image_labels(path: Path, policy: ErrorPolicy) -> dict[str, JhuImageLabel]:
    """Parse a split's ``image_labels.txt`` into ``{image name without suffix: row}``."""
    labels: dict[str, JhuImageLabel] = {}
    for lineno, text in read_lines(path, policy):
        fields = [f.strip() for f in text.split(",")]
        if len(fields) != 5:
            policy.fail(where(path, lineno), f"expected 5 comma-separated fields "
                                             f"'name,total_count,scene_type,weather,distractor', "
                                             f"got {len(fields)}: {text!r}")
            continue
        try:
            count, weather, distractor = int(fields[1]), int(fields[3]), int(fields[4])
        except ValueError:
            policy.fail(where(path, lineno), f"non-numeric count, weather or distractor in "
                                             f"{text!r}")
            continue
        labels[fields[0]] = JhuImageLabel(lineno, fields[0], count, fields[2], weather,
                                          bool(distractor))
    return labels


def format_jhu_head(xywh: tuple[int, int, int, int], occlusion: int = 1, blur: int = 0) -> str:
    """A gt line for a pixel box ``[x, y, w, h]``, anchored as :data:`XY_IS_CENTRE` says.

    With the centre anchor, an odd size puts the centre on a half pixel; the line then carries
    that ``.5`` so the box read back is exactly the one drawn (real files hold integers).
    """
    x, y, w, h = xywh
    if XY_IS_CENTRE:
        cx, cy = x + w / 2, y + h / 2
        return " ".join(f"{v:g}" for v in (cx, cy, w, h, occlusion, blur))
    return " ".join(str(v) for v in (x, y, w, h, occlusion, blur))


def format_image_label(name: str, count: int, scene: str, weather: int = 0,
                       distractor: bool = False) -> str:
    """An ``image_labels.txt`` row."""
    return f"{name},{count},{scene},{weather},{int(distractor)}"
