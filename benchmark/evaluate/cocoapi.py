"""Reference backends: pycocotools and faster-coco-eval, fed the very same units.

Each unit becomes one image (id = unit index + 1, units sorted by image id, or by (image id,
category id) for prompt sets), so both libraries evaluate exactly what the native backend does.
Detection records are built as ``COCO.loadRes`` builds them (``area = w * h``, ``iscrowd = 0``,
``id`` = position + 1), without its prints and without its refusal of an empty list.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import numpy as np

from benchmark.evaluate.inputs import Detections, GroundTruth, Units
from benchmark.evaluate.native import EvalArrays
from benchmark.evaluate.params import EvalParams
from tinyset_builder._imports import require


def _datasets(gt: GroundTruth, dt: Detections, units: Units) -> tuple[dict, dict]:
    images = [{"id": u + 1, "file_name": f"{u + 1}", "width": 1, "height": 1}
              for u in range(len(units.unit_img))]
    cats = [{"id": int(c), "name": str(int(c))} for c in gt.cat_ids]
    anns = []
    for r in np.flatnonzero(units.gt_unit >= 0).tolist():
        x, y, w, h = gt.box[r].tolist()
        anns.append({"id": int(gt.ann_id[r]), "image_id": int(units.gt_unit[r]) + 1,
                     "category_id": int(gt.cat_ids[gt.cat[r]]), "bbox": [x, y, w, h],
                     "area": float(gt.area[r]), "iscrowd": int(gt.crowd[r])})
    dets = []
    for n, r in enumerate(np.flatnonzero(units.dt_unit >= 0).tolist()):
        x, y, w, h = dt.box[r].tolist()
        dets.append({"id": n + 1, "image_id": int(units.dt_unit[r]) + 1,
                     "category_id": int(gt.cat_ids[dt.cat[r]]), "bbox": [x, y, w, h],
                     "score": float(dt.score[r]), "area": w * h, "iscrowd": 0,
                     "segmentation": [[x, y, x, y + h, x + w, y + h, x + w, y]]})
    base = {"info": {}, "images": images, "categories": cats}
    return {**base, "annotations": anns}, {**base, "annotations": dets}


def set_params(p: Any, params: EvalParams) -> None:
    """Put the TinySet protocol on a pycocotools-style ``Params`` object."""
    p.iouThrs = np.asarray(params.iou_thrs, np.float64)
    p.recThrs = np.asarray(params.rec_thrs, np.float64)
    p.maxDets = sorted(params.max_dets)
    p.areaRng = [[lo, hi] for _, lo, hi in params.area_ranges]
    p.areaRngLbl = [lbl for lbl, _, _ in params.area_ranges]
    p.useCats = 0 if params.class_agnostic else 1


def run_cocoapi(gt: GroundTruth, dt: Detections, units: Units, params: EvalParams,
                backend: str) -> EvalArrays:
    """COCOeval arrays from ``pycocotools`` or ``faster-coco-eval``."""
    gt_d, dt_d = _datasets(gt, dt, units)
    with contextlib.redirect_stdout(io.StringIO()):
        if backend == "pycocotools":
            require("pycocotools", extra="eval")
            from pycocotools.coco import COCO
            from pycocotools.cocoeval import COCOeval

            coco_gt, coco_dt = COCO(), COCO()
            coco_gt.dataset, coco_dt.dataset = gt_d, dt_d
            coco_gt.createIndex()
            coco_dt.createIndex()
            ev = COCOeval(coco_gt, coco_dt, "bbox")
        else:
            require("faster_coco_eval", extra="eval")
            from faster_coco_eval import COCO, COCOeval_faster

            coco_gt, coco_dt = COCO(gt_d), COCO(dt_d)
            ev = COCOeval_faster(coco_gt, coco_dt, "bbox", print_function=lambda *a, **k: None)
        set_params(ev.params, params)
        ev.params.imgIds = list(range(1, len(units.unit_img) + 1))
        ev.params.catIds = [int(c) for c in gt.cat_ids]
        ev.evaluate()
        ev.accumulate()
    e = ev.eval
    return EvalArrays(np.asarray(e["precision"], np.float64), np.asarray(e["recall"], np.float64),
                      np.asarray(e["scores"], np.float64))
