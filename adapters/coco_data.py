"""COCO export and COCO-results parsing shared by the subprocess adapters (mmdet, external).

Frameworks that read COCO themselves (MMDetection 3.x, the mmdet-2.x research forks, cvpods)
get a copy of the job's COCO file rewritten for them:

* ``file_name`` becomes the path relative to ``<data_dir>/images`` (``train/x.png``), so one
  ``img_prefix`` / ``data_prefix`` serves every split and variant;
* class-agnostic by default (the paper's protocol): every category becomes one category
  ``1 = "object"``; otherwise the dataset's categories are kept as they are;
* ignore regions stay ``iscrowd = 1`` (mmdet turns them into ``bboxes_ignore`` /
  ``ignore_flag``); boxes without area are dropped (mmdet drops them too) and counted;
* ``mode="points"`` (weakly supervised recipes): each annotation keeps its ``point`` and the
  box moves to ``true_bbox`` (the P2BNet/TOV_mmdetection convention); ``bbox`` becomes a
  1-pixel box at the point so loaders that insist on ``bbox`` still parse the file.

Predictions come back as COCO results (``[{image_id, category_id, bbox, score}]``, mmdet's
``<prefix>.bbox.json``); :func:`detections_from_coco_results` turns them into
:class:`~adapters.base.Detections`, mapping the exported category ids back.

Image lookup reuses :func:`baselines.data.image_path` (a light module: torch is
imported only inside its functions).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from adapters.base import Detections
from baselines.data import image_path
from tinyset_builder.errors import TinysetError
from tinyset_builder.io import read_json, write_json

AGNOSTIC_CATEGORY = {"id": 1, "name": "object", "supercategory": "object"}


@dataclass(frozen=True, slots=True)
class Export:
    """What :func:`export_coco` wrote.

    Attributes:
        path: the exported COCO file.
        to_dataset: exported category id -> the dataset's category id (for predictions).
        classes: category names in exported-id order (mmdet's ``metainfo.classes``).
        counts: images, boxes, crowd regions kept as ignore, degenerate boxes dropped.
    """

    path: Path
    to_dataset: dict[int, int]
    classes: tuple[str, ...]
    counts: dict[str, int] = field(default_factory=dict)


def export_coco(src: Path, data_dir: Path, out: Path, *, class_agnostic: bool = True,
                mode: Literal["boxes", "points"] = "boxes") -> Export:
    """Rewrite ``src`` for a COCO-reading framework (see the module docstring).

    Raises:
        TinysetError: an image is missing, an annotation names an unknown category, or
            ``mode="points"`` meets an annotation without ``point``.
    """
    coco = read_json(src)
    cats = sorted(coco.get("categories", []), key=lambda c: int(c["id"]))
    if not cats:
        raise TinysetError(f"{src}: no categories")
    if class_agnostic:
        out_cats = [dict(AGNOSTIC_CATEGORY)]
        remap = {int(c["id"]): 1 for c in cats}
        to_dataset = {1: int(cats[0]["id"])}
    else:
        out_cats = [{"id": int(c["id"]), "name": str(c["name"]),
                     "supercategory": str(c.get("supercategory", "object"))} for c in cats]
        remap = {int(c["id"]): int(c["id"]) for c in cats}
        to_dataset = dict(remap)
    split_hint = src.stem if src.stem in ("train", "val", "test") else None
    images_root = data_dir / "images"
    images = []
    for img in coco.get("images", []):
        real = image_path(data_dir, str(img["file_name"]), img.get("split") or split_hint)
        images.append({"id": int(img["id"]), "file_name": real.relative_to(images_root).as_posix(),
                       "width": int(img["width"]), "height": int(img["height"])})
    counts = {"images": len(images), "boxes": 0, "ignore_regions": 0, "degenerate_dropped": 0}
    anns = []
    for a in coco.get("annotations", []):
        cid = int(a["category_id"])
        if cid not in remap:
            raise TinysetError(f"{src}: annotation {a.get('id')} has unknown category_id {cid}")
        x, y, w, h = (float(v) for v in a["bbox"])
        entry: dict[str, Any] = {"id": int(a["id"]), "image_id": int(a["image_id"]),
                                 "category_id": remap[cid], "iscrowd": int(a.get("iscrowd", 0))}
        if mode == "points" and not entry["iscrowd"]:
            if "point" not in a:
                raise TinysetError(f"{src}: annotation {a.get('id')} has no point (derive the "
                                   f"points-center variant first)")
            px, py = (float(v) for v in a["point"])
            entry.update(point=[px, py], true_bbox=[x, y, w, h],
                         bbox=[px - 0.5, py - 0.5, 1.0, 1.0], area=1.0)
        else:
            if w <= 0 or h <= 0:
                counts["degenerate_dropped"] += 1
                continue
            entry.update(bbox=[x, y, w, h], area=w * h)
        counts["ignore_regions" if entry["iscrowd"] else "boxes"] += 1
        anns.append(entry)
    write_json(out, {"images": images, "annotations": anns, "categories": out_cats})
    return Export(out, to_dataset, tuple(str(c["name"]) for c in out_cats), counts)


def detections_from_coco_results(results: Sequence[Mapping[str, Any]] | Path,
                                 eval_json: Path, to_dataset: Mapping[int, int],
                                 ) -> list[Detections]:
    """COCO results -> one :class:`Detections` per image of ``eval_json`` (empty when none).

    Args:
        results: the entries, or the path of a results JSON file.
        eval_json: the COCO file the predictions answer (fixes the image list and order).
        to_dataset: exported category id -> dataset category id (:attr:`Export.to_dataset`).

    Raises:
        TinysetError: a result names an image or category that was not exported, or has a
            malformed box (the file is named).
    """
    where = str(results) if isinstance(results, Path) else "results"
    entries = read_json(results) if isinstance(results, Path) else results
    if not isinstance(entries, list):
        raise TinysetError(f"{where}: expected a JSON list of COCO results")
    ids = [int(i["id"]) for i in read_json(eval_json).get("images", [])]
    per: dict[int, list[tuple[list[float], float, int]]] = {i: [] for i in ids}
    for k, r in enumerate(entries):
        try:
            image_id, cid = int(r["image_id"]), int(r["category_id"])
            x, y, w, h = (float(v) for v in r["bbox"])
            score = float(r["score"])
        except (KeyError, TypeError, ValueError) as e:
            raise TinysetError(f"{where}: result {k} is not a COCO detection ({e})") from None
        if image_id not in per:
            raise TinysetError(f"{where}: result {k} names image {image_id}, not in {eval_json}")
        if cid not in to_dataset:
            raise TinysetError(f"{where}: result {k} has category_id {cid}, never exported")
        per[image_id].append(([x, y, x + w, y + h], score, to_dataset[cid]))
    out = []
    for image_id, dets in per.items():
        if not dets:
            out.append(Detections.empty(image_id))
            continue
        dets.sort(key=lambda d: -d[1])
        out.append(Detections(image_id, np.asarray([d[0] for d in dets], np.float32),
                              np.asarray([d[1] for d in dets], np.float32),
                              np.asarray([d[2] for d in dets], np.int64)))
    return out
