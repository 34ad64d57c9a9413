"""The TinySet evaluation protocol (DESIGN.md, "Evaluation protocol") as one value.

The float grids are built exactly as pycocotools builds them (``numpy.linspace``), because
thresholds are selected by exact equality and compared with ``>=``: the ninth IoU threshold is
``0.8999999999999999``, not ``0.9``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tinyset_builder.errors import TinysetError

#: ``[0.25] + linspace(0.5, 0.95, 10)``: 0.25 is reported alone and never enters a mean.
IOU_THRS: tuple[float, ...] = (0.25, *np.linspace(0.5, 0.95, 10).tolist())
#: The 0.50:0.95 subset that ``AP`` (and ``--size-iou 0.5:0.95``) averages over.
COCO_IOUS: tuple[float, ...] = tuple(np.linspace(0.5, 0.95, 10).tolist())
#: 101 recall points, as pycocotools: ``linspace(0, 1, round((1 - 0) / 0.01) + 1)``.
REC_THRS: tuple[float, ...] = tuple(np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1)
                                    .tolist())
#: Area ranges in px², inclusive at both ends as pycocotools compares them.
AREA_RANGES: tuple[tuple[str, float, float], ...] = (
    ("all", 0.0, 1e10), ("verytiny", 0.0, 64.0), ("tiny", 64.0, 256.0),
    ("small", 256.0, 1024.0), ("medium", 1024.0, 1e10))
#: Key suffix of each size bucket in the reported metrics (``APvt`` ...).
AREA_KEYS = {"verytiny": "vt", "tiny": "t", "small": "s", "medium": "m"}
MAX_DETS: tuple[int, ...] = (100, 1500, 3000)
#: NWD constant C (px) of ``jwwangchn/NWD``'s ``BboxDistanceMetric``: AI-TOD's mean object size.
NWD_CONSTANT = 12.8


@dataclass(frozen=True)
class EvalParams:
    """Everything that decides the numbers, recorded in the ``params`` block of the output.

    Attributes:
        iou_thrs: the threshold grid (sorted as given; pycocotools does not sort it).
        rec_thrs: the recall points.
        area_ranges: ``(label, lo, hi)`` per range, ``all`` first.
        max_dets: sorted detection caps per evaluation unit; headline numbers use the largest.
        size_iou: thresholds the four size APs average over (``(0.5,)`` by default).
        class_agnostic: pool categories (pycocotools ``useCats=0``) or average over them.
    """

    iou_thrs: tuple[float, ...] = IOU_THRS
    rec_thrs: tuple[float, ...] = REC_THRS
    area_ranges: tuple[tuple[str, float, float], ...] = AREA_RANGES
    max_dets: tuple[int, ...] = MAX_DETS
    size_iou: tuple[float, ...] = (0.5,)
    class_agnostic: bool = True
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def make(cls, *, size_iou: str | float | Sequence[float] = "0.5",
             max_dets: Sequence[int] | int | str = MAX_DETS,
             class_agnostic: bool = True) -> EvalParams:
        """Build the protocol from user-facing options (validated, one-line errors)."""
        return cls(max_dets=parse_max_dets(max_dets), size_iou=parse_size_iou(size_iou),
                   class_agnostic=class_agnostic)

    def to_dict(self) -> dict[str, Any]:
        """The ``params`` block of the JSON output."""
        return {"iouThrs": list(self.iou_thrs), "recThrs": len(self.rec_thrs),
                "areaRng": {lbl: [lo, hi] for lbl, lo, hi in self.area_ranges},
                "maxDets": list(self.max_dets), "size_iou": list(self.size_iou),
                "class_agnostic": self.class_agnostic, **self.extra}


def parse_max_dets(value: Sequence[int] | int | str) -> tuple[int, ...]:
    """``"100,1500,3000"`` / ``[100, 1500, 3000]`` / ``3000`` → sorted unique positive ints."""
    if isinstance(value, str):
        try:
            items = [int(v) for v in value.replace(" ", "").split(",") if v]
        except ValueError:
            raise TinysetError(f"--max-dets must be comma-separated integers, got {value!r}") \
                from None
    elif isinstance(value, int):
        items = [value]
    else:
        items = [int(v) for v in value]
    if not items or any(v <= 0 for v in items):
        raise TinysetError(f"max_dets must be positive integers, got {value!r}")
    return tuple(sorted(set(items)))


def parse_size_iou(value: str | float | Sequence[float]) -> tuple[float, ...]:
    """``"0.5"`` → ``(0.5,)``; ``"0.5:0.95"`` → the 10 COCO thresholds (values from the grid)."""
    if isinstance(value, str):
        text = value.strip()
        if text in ("0.5:0.95", ".5:.95", "0.50:0.95"):
            return COCO_IOUS
        try:
            value = float(text)
        except ValueError:
            raise TinysetError(f"--size-iou must be one threshold of the grid or 0.5:0.95, "
                               f"got {value!r}") from None
    values = [float(value)] if isinstance(value, (int, float)) else [float(v) for v in value]
    grid = np.asarray(IOU_THRS)
    out = []
    for v in values:
        hit = grid[np.isclose(grid, v, rtol=0, atol=1e-9)]
        if hit.size != 1:
            raise TinysetError(f"size IoU {v} is not in the threshold grid {list(IOU_THRS)}")
        out.append(float(hit[0]))
    return tuple(out)
