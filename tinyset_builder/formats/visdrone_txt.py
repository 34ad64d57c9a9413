"""VisDrone-DET annotation text: one object per line, comma-separated.

``bbox_left,bbox_top,bbox_width,bbox_height,score,object_category,truncation,occlusion``, pixels.
``score`` 0 marks a box the official evaluation ignores; category 0 is an "ignored region" and
11 is "others". Some files end lines with a trailing comma, which is stripped.

Sample line (a partly occluded car): ``684,8,273,116,1,4,0,1``
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tinyset_builder.errors import ErrorPolicy, where
from tinyset_builder.formats.text import read_lines


@dataclass(frozen=True, slots=True)
class VisDroneRow:
    """One parsed line; ``line`` is 1-based for error messages."""

    line: int
    xywh: tuple[float, float, float, float]
    score: int
    category: int
    truncation: int
    occlusion: int


def read_visdrone_txt(path: Path, policy: ErrorPolicy) -> list[VisDroneRow]:
    """Parse one annotation file; bad lines go through ``policy`` (raise or count and skip)."""
    rows = []
    for lineno, text in read_lines(path, policy):
        fields = text.rstrip(",").split(",")
        if len(fields) < 8:
            policy.fail(where(path, lineno), f"expected 8 comma-separated fields, got "
                                             f"{len(fields)}: {text!r}")
            continue
        try:
            x, y, w, h = (float(v) for v in fields[:4])
            score, category, trunc, occ = (int(v) for v in fields[4:8])
        except ValueError:
            policy.fail(where(path, lineno), f"non-numeric field in {text!r}")
            continue
        rows.append(VisDroneRow(lineno, (x, y, w, h), score, category, trunc, occ))
    return rows


def format_visdrone_row(xywh: tuple[int, int, int, int], score: int, category: int,
                        truncation: int = 0, occlusion: int = 0) -> str:
    """One line in the native format (used by the synthesizer)."""
    return ",".join(str(v) for v in (*xywh, score, category, truncation, occlusion))
