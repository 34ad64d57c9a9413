"""MOT-style per-video CSV of the BIRDSAI thermal wildlife videos: one box per row, no header.

``frame,object_id,x,y,w,h,class,species,occlusion,noise`` (BIRDSAI README via its LILA release):
``x, y`` is the box's top-left corner in pixels; ``class`` is 0 animal / 1 human; ``species`` is
-1 unknown, 0 human, 1 elephant, 2 lion, 3 giraffe, 4 dog, 5 crocodile, 6 hippo, 7 zebra,
8 rhino; ``occlusion`` and ``noise`` are 0/1 flags.

Sample row (frame 12, track 3, a 9x6 px elephant): ``12,3,311,207,9,6,0,1,0,0``
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tinyset_builder.errors import ErrorPolicy, where
from tinyset_builder.formats.text import read_lines

COLUMNS = ("frame", "object_id", "x", "y", "w", "h", "class", "species", "occlusion", "noise")


@dataclass(frozen=True, slots=True)
class MotRow:
    """One parsed row; ``line`` is 1-based for error messages."""

    line: int
    frame: int
    object_id: int
    xywh: tuple[float, float, float, float]
    cls: int
    species: int
    occlusion: int
    noise: int


def _int(text: str) -> int:
    # Some exporters write integral values as floats ("12.0"); anything else is an error.
    value = float(text)
    if not value.is_integer():
        raise ValueError(text)
    return int(value)


def read_mot_csv(path: Path, policy: ErrorPolicy) -> list[MotRow]:
    """Parse one video's CSV; bad rows go through ``policy`` (raise, or count and skip)."""
    rows = []
    for lineno, text in read_lines(path, policy):
        fields = [f.strip() for f in text.rstrip(",").split(",")]
        if len(fields) != len(COLUMNS):
            policy.fail(where(path, lineno), f"expected {len(COLUMNS)} comma-separated fields "
                                             f"({','.join(COLUMNS)}), got {len(fields)}: "
                                             f"{text!r}")
            continue
        try:
            frame, object_id = _int(fields[0]), _int(fields[1])
            x, y, w, h = (float(v) for v in fields[2:6])
            cls, species, occlusion, noise = (_int(v) for v in fields[6:10])
        except ValueError:
            policy.fail(where(path, lineno), f"non-numeric field in {text!r}")
            continue
        if frame < 0:
            policy.fail(where(path, lineno), f"negative frame number {frame}")
            continue
        rows.append(MotRow(lineno, frame, object_id, (x, y, w, h), cls, species, occlusion,
                           noise))
    return rows


def format_mot_row(frame: int, object_id: int, xywh: Sequence[float], cls: int, species: int,
                   occlusion: int = 0, noise: int = 0) -> str:
    """One CSV row in the native layout (used by the synthesizer)."""
    return ",".join(str(v) for v in (frame, object_id, *xywh, cls, species, occlusion, noise))
