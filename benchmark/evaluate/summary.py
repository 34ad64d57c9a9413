"""Reported numbers from COCOeval's arrays, with pycocotools' own ``_summarize`` arithmetic.

Each figure is ``np.mean(s[s > -1])`` over a slice of the precision (AP) or recall (AR) array,
sliced exactly as ``COCOeval.summarize`` slices it, so that the same arrays give the same bits.
Thresholds and maxDets are picked by exact equality; a figure with nothing defined is -1.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmark.evaluate.params import AREA_KEYS, COCO_IOUS, EvalParams


def _mean(precision: np.ndarray, recall: np.ndarray, params: EvalParams, *, ap: bool,
          ious: tuple[float, ...] | None, area: str, max_det: int) -> float:
    thrs = np.asarray(params.iou_thrs)
    aind = [i for i, (lbl, _, _) in enumerate(params.area_ranges) if lbl == area]
    mind = [i for i, m in enumerate(sorted(params.max_dets)) if m == max_det]
    s = precision if ap else recall
    if ious is not None:
        t = np.flatnonzero(np.isin(thrs, np.asarray(ious)))
        s = s[t]
    s = s[:, :, :, aind, mind] if ap else s[:, :, aind, mind]
    valid = s[s > -1]
    return -1.0 if len(valid) == 0 else float(np.mean(valid))


def summarize(precision: np.ndarray, recall: np.ndarray, params: EvalParams) -> dict[str, float]:
    """The DESIGN.md keys: ``AP25 AP50 AP75 AP APvt APt APs APm``, then ``AR`` figures.

    ``AP`` and every ``AR`` average over IoU 0.50:0.95 (0.25 never enters a mean); the size
    figures average over ``params.size_iou``; all at the largest maxDets, except ``AR<m>`` which
    is the recall at each maxDets ``m``.
    """
    top = max(params.max_dets)
    out: dict[str, float] = {}

    def ap(ious: tuple[float, ...], area: str = "all") -> float:
        return _mean(precision, recall, params, ap=True, ious=ious, area=area, max_det=top)

    out["AP25"] = ap((0.25,))
    out["AP50"] = ap((0.5,))
    out["AP75"] = ap((0.75,))
    out["AP"] = ap(COCO_IOUS)
    for area, key in AREA_KEYS.items():
        out[f"AP{key}"] = ap(params.size_iou, area)
    out["AR"] = _mean(precision, recall, params, ap=False, ious=COCO_IOUS, area="all",
                      max_det=top)
    for m in sorted(params.max_dets):
        out[f"AR{m}"] = _mean(precision, recall, params, ap=False, ious=COCO_IOUS, area="all",
                              max_det=m)
    for area, key in AREA_KEYS.items():
        out[f"AR{key}"] = _mean(precision, recall, params, ap=False, ious=params.size_iou,
                                area=area, max_det=top)
    return out


#: Column order of the paper's tables (then the COCO-style mean).
TABLE_KEYS = ("AP25", "AP50", "AP75", "APvt", "APt", "APs", "APm", "AP")


def as_row(metrics: dict[str, Any]) -> list[str]:
    """Percent strings in :data:`TABLE_KEYS` order ("–" where undefined)."""
    return ["–" if metrics[k] < 0 else f"{100 * metrics[k]:.1f}" for k in TABLE_KEYS]
