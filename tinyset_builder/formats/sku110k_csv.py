"""SKU110K annotation CSV: one box per row, no header, one file per split.

``image_name,x1,y1,x2,y2,class,image_width,image_height`` with absolute pixel corners (xyxy) and
the image's own size repeated on every row; ``class`` is always ``object`` in the release.
Parsed with the :mod:`csv` module, so a quoted field is read as CSV means it.

Sample row: ``train_0.jpg,208,537,422,814,object,3024,3024``
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tinyset_builder.errors import ErrorPolicy, where
from tinyset_builder.formats.text import read_text_or_skip, split_lines

COLUMNS = ("image_name", "x1", "y1", "x2", "y2", "class", "image_width", "image_height")


@dataclass(frozen=True, slots=True)
class SkuRow:
    """One parsed row; ``line`` is 1-based for error messages."""

    line: int
    image: str
    xyxy: tuple[float, float, float, float]
    category: str
    width: int
    height: int


def read_sku110k_csv(path: Path, policy: ErrorPolicy) -> list[SkuRow]:
    """Parse one split's CSV; bad rows go through ``policy`` (raise, or count and skip)."""
    text = read_text_or_skip(path, policy)
    if text is None:
        return []
    rows = []
    for lineno, line in enumerate(split_lines(text), start=1):
        # One physical line at a time, so a malformed row (e.g. an unterminated quote running
        # past csv's 128 kB field limit) is one bad record, not a csv.Error for the whole file.
        try:
            fields = next(csv.reader([line]), [])
        except csv.Error as e:
            policy.fail(where(path, lineno), f"malformed CSV row ({e})")
            continue
        if not fields or all(not f.strip() for f in fields):
            if line.strip():
                policy.fail(where(path, lineno), f"row without values: {line!r}")
            continue
        if len(fields) != len(COLUMNS):
            policy.fail(where(path, lineno), f"expected {len(COLUMNS)} columns "
                                             f"({','.join(COLUMNS)}), got {len(fields)}")
            continue
        name, *corners, category, width, height = (f.strip() for f in fields)
        try:
            x1, y1, x2, y2 = (float(v) for v in corners)
            w, h = int(width), int(height)
        except ValueError:
            policy.fail(where(path, lineno), f"non-numeric coordinate or size in "
                                             f"{','.join(fields)!r}")
            continue
        if not name:
            policy.fail(where(path, lineno), "empty image name")
            continue
        rows.append(SkuRow(lineno, name, (x1, y1, x2, y2), category, w, h))
    return rows


def format_sku110k_row(image: str, xyxy: Sequence[float], width: int, height: int,
                       category: str = "object") -> str:
    """One CSV row in the native layout (used by the synthesizer)."""
    return ",".join([image, *(str(v) for v in xyxy), category, str(width), str(height)])
