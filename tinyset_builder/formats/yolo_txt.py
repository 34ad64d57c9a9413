"""YOLO text labels: one ``labels/<stem>.txt`` per image, one object per line, normalised.

``class cx cy w h``: a 0-based class index, then the box centre and size divided by the image
width and height, so converting to pixels needs the real image size (read from the image header,
never assumed: Roboflow exports are often resized, e.g. to 1280x1280 "stretch").
Fields are separated by spaces in Ultralytics/Roboflow exports; some challenge kits (VisAlgae)
describe commas, so both are accepted. A line with more than five fields and an odd count is an
Ultralytics *segment* line (``class x1 y1 x2 y2 ...``) and becomes the polygon's bounding box.

Class names live outside the label files, in a ``data.yaml`` whose ``names`` is a list or an
``{index: name}`` mapping (Ultralytics accepts both).

Sample line (a ball in a Roboflow DFL export): ``0 0.42421875 0.269921875 0.005859375 0.012109375``
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinyset_builder.boxes import XYWH, cxcywh_norm_to_xywh, polygon_to_xywh, xywh_to_cxcywh_norm
from tinyset_builder.errors import ErrorPolicy, SourceError, where
from tinyset_builder.formats.text import read_lines, read_text

#: Image suffixes looked for next to a label file (lower case; matched case-insensitively).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

_SEPARATORS = re.compile(r"[,\s]+")
#: Normalised values may overshoot [0, 1] by rounding in the exporting tool; more is an error.
_TOLERANCE = 1e-3


@dataclass(frozen=True, slots=True)
class YoloRow:
    """One parsed line; ``cxcywh`` is normalised; ``line`` is 1-based for error messages."""

    line: int
    category: int
    cxcywh: tuple[float, float, float, float]

    def to_xywh(self, width: int, height: int) -> XYWH:
        """The box in absolute pixels ``[x, y, w, h]`` for an image of that size."""
        return cxcywh_norm_to_xywh(self.cxcywh, width, height)


def parse_yolo_line(text: str) -> tuple[int, tuple[float, float, float, float]]:
    """Parse one label line into ``(class, (cx, cy, w, h))``.

    Raises:
        ValueError: with a reason fit for an error message.
    """
    fields = [f for f in _SEPARATORS.split(text.strip()) if f]
    n = len(fields)
    if n != 5 and (n < 7 or n % 2 == 0):
        raise ValueError(f"expected 5 fields 'class cx cy w h' (or a class and polygon "
                         f"points), got {n}: {text!r}")
    try:
        cls_value = float(fields[0])
        values = [float(v) for v in fields[1:]]
    except ValueError:
        raise ValueError(f"non-numeric field in {text!r}") from None
    if not cls_value.is_integer() or cls_value < 0:
        raise ValueError(f"class must be a non-negative integer, got {fields[0]!r}")
    if not all(abs(v) < float("inf") for v in values):
        raise ValueError(f"non-finite value in {text!r}")
    if any(v < -_TOLERANCE or v > 1 + _TOLERANCE for v in values):
        raise ValueError(f"coordinates must be normalised to [0, 1] (box outside the image?): "
                         f"{text!r}")
    if n == 5:
        cx, cy, w, h = values
    else:
        x, y, w, h = polygon_to_xywh(values)
        cx, cy = x + w / 2, y + h / 2
    return int(cls_value), (cx, cy, w, h)


def read_yolo_txt(path: Path, policy: ErrorPolicy) -> list[YoloRow]:
    """Parse one label file; bad lines go through ``policy`` (raise, or count and skip)."""
    rows = []
    for lineno, text in read_lines(path, policy):
        try:
            category, box = parse_yolo_line(text)
        except ValueError as e:
            policy.fail(where(path, lineno), str(e))
            continue
        rows.append(YoloRow(lineno, category, box))
    return rows


def format_yolo_row(category: int, xywh: Sequence[float], width: int, height: int, *,
                    sep: str = " ") -> str:
    """One label line for a pixel box ``[x, y, w, h]`` in an image of that size."""
    values = xywh_to_cxcywh_norm(xywh, width, height)
    return sep.join([str(category), *(f"{v:.8f}" for v in values)])


def read_class_names(path: Path) -> list[str]:
    """The ``names`` of a ``data.yaml`` in class-index order.

    Raises:
        SourceError: the file is missing, not YAML, has no usable ``names``, or disagrees with
            its own ``nc``.
    """
    import yaml  # type: ignore[import-untyped]

    try:
        data: Any = yaml.safe_load(read_text(path))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f":{mark.line + 1}" if mark is not None else ""
        problem = " ".join(str(getattr(e, "problem", None) or e).split())  # PyYAML: multi-line
        raise SourceError(f"{path}{at}: not valid YAML ({problem})") from None
    names = data.get("names") if isinstance(data, dict) else None
    if isinstance(names, dict):
        if not all(isinstance(k, int) and not isinstance(k, bool) for k in names):
            raise SourceError(f"{path}: names must be indexed 0..n-1, got keys {list(names)}")
        keys = sorted(names)
        if keys != list(range(len(keys))):
            raise SourceError(f"{path}: names must be indexed 0..n-1, got keys {keys}")
        names = [names[k] for k in keys]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise SourceError(f"{path}: 'names' must be a non-empty list of class names")
    nc = data.get("nc")
    if nc is not None and nc != len(names):
        raise SourceError(f"{path}: nc = {nc} but {len(names)} names are listed")
    return names


def format_data_yaml(names: Sequence[str], splits: dict[str, str]) -> str:
    """A ``data.yaml`` in the layout Roboflow writes (split image folders, ``nc``, ``names``)."""
    import yaml  # type: ignore[import-untyped]

    doc = {**splits, "nc": len(names), "names": list(names)}
    return str(yaml.safe_dump(doc, sort_keys=False, default_flow_style=False))


def find_images(images_dir: Path) -> list[Path]:
    """Image files directly inside ``images_dir``, sorted by name."""
    if not images_dir.is_dir():
        return []
    return sorted(p for p in images_dir.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
