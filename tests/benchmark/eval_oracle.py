"""The oracle for evaluator tests: real pycocotools COCOeval on the user's own GT/DT dicts.

Deliberately independent of ``benchmark.evaluate``: it feeds pycocotools the original records
(``COCO`` + ``loadRes``), sets the TinySet parameters on its ``Params``, and re-states
``COCOeval._summarize`` for the reported keys.
"""

from __future__ import annotations

import contextlib
import copy
import io
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

THRS = np.array([0.25, *np.linspace(0.5, 0.95, 10)])
AREAS = [[0, 1e10], [0, 64], [64, 256], [256, 1024], [1024, 1e10]]
LABELS = ["all", "verytiny", "tiny", "small", "medium"]


def coco_eval(gt: dict[str, Any], dt: list[dict[str, Any]], *, max_dets=(100, 1500, 3000),
              use_cats: bool = False, img_ids: list[int] | None = None) -> COCOeval:
    """Run pycocotools (evaluate + accumulate) with the TinySet parameters."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        if dt:
            coco_dt = coco_gt.loadRes(copy.deepcopy(dt))
        else:  # loadRes cannot take an empty list; an empty result set is still valid
            coco_dt = COCO()
            coco_dt.dataset = {"images": copy.deepcopy(gt["images"]), "annotations": [],
                               "categories": copy.deepcopy(gt["categories"])}
            coco_dt.createIndex()
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        ev.params.iouThrs = THRS.copy()
        ev.params.maxDets = list(max_dets)
        ev.params.areaRng = [list(a) for a in AREAS]
        ev.params.areaRngLbl = list(LABELS)
        ev.params.useCats = int(use_cats)
        if img_ids is not None:
            ev.params.imgIds = sorted(img_ids)
        ev.evaluate()
        ev.accumulate()
    return ev


def _summ(ev: COCOeval, ap: bool, thr_idx: list[int], area: str, max_det: int) -> float:
    # pycocotools' _summarize, with the IoU rows given by index.
    p = ev.params
    aind = [i for i, a in enumerate(p.areaRngLbl) if a == area]
    mind = [i for i, m in enumerate(p.maxDets) if m == max_det]
    if ap:
        s = ev.eval["precision"][np.asarray(thr_idx)]
        s = s[:, :, :, aind, mind]
    else:
        s = ev.eval["recall"][np.asarray(thr_idx)]
        s = s[:, :, aind, mind]
    return -1.0 if len(s[s > -1]) == 0 else float(np.mean(s[s > -1]))


def expected_keys(ev: COCOeval, *, size_iou: str = "0.5") -> dict[str, float]:
    """The DESIGN.md keys computed from pycocotools' arrays."""
    p = ev.params
    top = max(p.maxDets)

    def idx(v: float) -> list[int]:
        return np.where(v == p.iouThrs)[0].tolist()

    coco = list(range(1, 11))
    size = coco if size_iou == "0.5:0.95" else idx(0.5)
    out = {"AP25": _summ(ev, True, idx(0.25), "all", top),
           "AP50": _summ(ev, True, idx(0.5), "all", top),
           "AP75": _summ(ev, True, idx(0.75), "all", top),
           "AP": _summ(ev, True, coco, "all", top)}
    for lbl, key in zip(LABELS[1:], ("vt", "t", "s", "m"), strict=True):
        out[f"AP{key}"] = _summ(ev, True, size, lbl, top)
    out["AR"] = _summ(ev, False, coco, "all", top)
    for m in p.maxDets:
        out[f"AR{m}"] = _summ(ev, False, coco, "all", m)
    for lbl, key in zip(LABELS[1:], ("vt", "t", "s", "m"), strict=True):
        out[f"AR{key}"] = _summ(ev, False, size, lbl, top)
    return out


def random_case(seed: int, *, n_img: int = 4, n_gt: int = 40, n_dt: int = 60, n_cat: int = 3,
                extent: int = 120) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A dense, tie-rich case: integer boxes in a small area, few distinct scores, crowd GTs,
    GT areas that differ from w*h, shuffled ids, an image without GT and one without detections."""
    rng = np.random.default_rng(seed)
    img_ids = [int(i) for i in rng.choice(np.arange(1, 500), n_img, replace=False)]
    sources = ["a", "b", None]
    images = [{"id": i, "file_name": f"{i}.png", "width": 1024, "height": 1024,
               "source": sources[k % 3], "domain": ["aerial", "traffic"][k % 2]}
              for k, i in enumerate(img_ids)]
    sizes = [2, 4, 5, 8, 8, 12, 16, 16, 20, 32, 32, 40, 64]
    ann_ids = rng.permutation(np.arange(1 if seed % 2 else 0, n_img * n_gt + 10))
    anns, k = [], 0
    for img in img_ids[:-1]:  # the last image has no GT
        for _ in range(n_gt):
            w, h = float(rng.choice(sizes)), float(rng.choice(sizes))
            if rng.random() < 0.2:
                w += float(rng.integers(0, 4)) / 4
            x, y = float(rng.integers(0, extent)), float(rng.integers(0, extent))
            area = w * h if rng.random() < 0.85 else float(rng.choice([64, 256, 1024, w * h / 2]))
            anns.append({"id": int(ann_ids[k]), "image_id": img,
                         "category_id": int(rng.integers(1, n_cat + 1)),
                         "bbox": [x, y, w, h], "area": area,
                         "iscrowd": int(rng.random() < 0.08)})
            k += 1
    dets = []
    gt_by_img: dict[int, list[dict[str, Any]]] = {}
    for a in anns:
        gt_by_img.setdefault(a["image_id"], []).append(a)
    scores = [0.9, 0.8, 0.8, 0.7, 0.5, 0.5, 0.3, 0.1]
    for img in [img_ids[-1], *img_ids[1:-1]]:  # the first image has no detections
        own = gt_by_img.get(img, [])
        for _ in range(n_dt):
            if own and rng.random() < 0.6:
                g = own[int(rng.integers(0, len(own)))]
                j = rng.integers(-2, 3, 4).astype(float)
                x, y, w, h = g["bbox"]
                box = [x + j[0], y + j[1], max(0.0, w + j[2]), max(0.0, h + j[3])]
                cat = g["category_id"] if rng.random() < 0.8 else int(rng.integers(1, n_cat + 1))
            else:
                box = [float(rng.integers(0, extent)), float(rng.integers(0, extent)),
                       float(rng.choice(sizes)), float(rng.choice(sizes))]
                cat = int(rng.integers(1, n_cat + 1))
            score = float(rng.choice(scores)) if rng.random() < 0.7 else float(rng.random())
            dets.append({"image_id": img, "category_id": cat, "bbox": box, "score": score})
    order = rng.permutation(len(dets))
    dets = [dets[i] for i in order]
    cats = [{"id": c, "name": f"src/c{c}"} for c in range(n_cat, 0, -1)]
    cats.append({"id": n_cat + 7, "name": "src/unused"})  # a category without GT
    return {"images": images, "annotations": anns, "categories": cats}, dets
