"""Ground truth, detections and prompts: loaded once into columns, validated with one-line errors.

The evaluator never builds one Python object per box: a 200-image TinySet test file holds 600k
boxes. JSON records are read into numpy columns with list comprehensions, validated with array
checks, and only on failure scanned record by record to name the first bad one.

Rules (pycocotools semantics, made explicit):
* GT ``area`` is the annotation's own ``area`` field (``w * h`` when absent); a detection's area is
  ``w * h``. ``iscrowd: 1`` marks an ignore region.
* Detections must name a GT image and a GT category (pycocotools silently drops unknown
  categories, even class-agnostically; we refuse them instead, so a mislabelled file cannot score
  0 AP quietly).
* An empty detection list is valid: every AP is 0.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tinyset_builder.errors import TinysetError
from tinyset_builder.io import read_json

PROMPTS_SCHEMA = "tinyset-prompts/1"
IMAGE_FIELDS = ("source", "domain")


@dataclass
class GroundTruth:
    """GT columns. ``img``/``cat`` index ``image_ids``/``cat_ids`` (both sorted, unique)."""

    label: str
    image_ids: np.ndarray
    image_fields: dict[str, list[Any]]
    cat_ids: np.ndarray
    img: np.ndarray
    cat: np.ndarray
    box: np.ndarray
    area: np.ndarray
    crowd: np.ndarray
    ann_id: np.ndarray

    def __len__(self) -> int:
        return len(self.img)


@dataclass
class Detections:
    """Detection columns in file order (``id`` = file position + 1, as ``loadRes``)."""

    label: str
    img: np.ndarray
    cat: np.ndarray
    box: np.ndarray
    score: np.ndarray
    area: np.ndarray

    def __len__(self) -> int:
        return len(self.img)


@dataclass
class Prompts:
    """P2SOD evaluation units: ``(image index, category index)`` pairs, sorted by ids."""

    label: str
    img: np.ndarray
    cat: np.ndarray
    digest: str
    setting: str | None


def _label(src: object, default: str) -> str:
    return str(src) if isinstance(src, (str, os.PathLike)) else default


def _column(records: Sequence[Mapping[str, Any]], key: str, label: str, what: str,
            default: Any = KeyError) -> list[Any]:
    try:
        if default is KeyError:
            return [r[key] for r in records]
        return [r.get(key, default) for r in records]
    except (KeyError, TypeError, AttributeError):
        for i, r in enumerate(records):
            if not isinstance(r, Mapping):
                raise TinysetError(f"{label}: {what} #{i} is not a JSON object") from None
            if key not in r:
                raise TinysetError(f"{label}: {what} #{i} (id {r.get('id', '?')}) lacks "
                                   f"key {key!r}") from None
        raise


def _ints(values: list[Any], label: str, what: str, key: str) -> np.ndarray:
    arr = np.asarray(values) if values else np.zeros(0, np.int64)
    if arr.ndim != 1 or arr.dtype.kind not in "iub":
        for i, v in enumerate(values):
            if not isinstance(v, int) or isinstance(v, bool):
                raise TinysetError(f"{label}: {what} #{i}: {key} must be an integer, got {v!r}")
            if not -2**63 <= v < 2**63:  # numpy falls back to object arrays past int64
                raise TinysetError(f"{label}: {what} #{i}: {key} {v} is out of the 64-bit range")
        raise TinysetError(f"{label}: {what}: {key} must be integers")
    return arr.astype(np.int64)


def _floats(values: list[Any], label: str, what: str, key: str) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64) if values else np.zeros(0)
    except (TypeError, ValueError):
        arr = None
    if arr is None or arr.ndim != 1:
        for i, v in enumerate(values):
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                raise TinysetError(f"{label}: {what} #{i}: {key} must be a number, got {v!r}")
        raise TinysetError(f"{label}: {what}: {key} must be numbers")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        v = values[bad[0]]
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            raise TinysetError(f"{label}: {what} #{bad[0]}: {key} must be a number, got {v!r}")
        raise TinysetError(f"{label}: {what} #{bad[0]}: {key} is {v!r} (must be finite)")
    return arr


def _boxes(values: list[Any], label: str, what: str) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64) if values else np.zeros((0, 4))
    except (TypeError, ValueError):
        arr = None
    if arr is None or arr.ndim != 2 or arr.shape[1] != 4:
        for i, b in enumerate(values):
            if (not isinstance(b, (list, tuple)) or len(b) != 4
                    or any(not isinstance(v, (int, float)) or isinstance(v, bool) for v in b)):
                raise TinysetError(f"{label}: {what} #{i}: bbox must be [x, y, w, h] numbers, "
                                   f"got {b!r}")
        raise TinysetError(f"{label}: {what}: bbox must be [x, y, w, h]")
    _check_boxes(arr, label, what)
    return arr


def _check_boxes(arr: np.ndarray, label: str, what: str) -> None:
    bad = np.flatnonzero(~np.isfinite(arr).all(axis=1))
    if bad.size:
        raise TinysetError(f"{label}: {what} #{bad[0]}: bbox {arr[bad[0]].tolist()} is not "
                           f"finite")
    neg = np.flatnonzero((arr[:, 2] < 0) | (arr[:, 3] < 0))
    if neg.size:
        raise TinysetError(f"{label}: {what} #{neg[0]}: bbox {arr[neg[0]].tolist()} has a "
                           f"negative width or height")


def _check_finite(arr: np.ndarray, label: str, what: str, key: str) -> None:
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise TinysetError(f"{label}: {what} #{bad[0]}: {key} is {arr[bad[0]]} (must be finite)")


def _unique_ids(ids: np.ndarray, label: str, what: str) -> None:
    if ids.size and np.unique(ids).size != ids.size:
        s = np.sort(ids)
        dup = s[1:][s[1:] == s[:-1]][0]
        raise TinysetError(f"{label}: duplicate {what} id {dup}")


def _index(ids: np.ndarray, table: np.ndarray, label: str, what: str, key: str) -> np.ndarray:
    pos = np.searchsorted(table, ids)
    pos_c = np.minimum(pos, max(len(table) - 1, 0))
    ok = (pos < len(table)) & (table[pos_c] == ids) if len(table) else np.zeros(len(ids), bool)
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        raise TinysetError(f"{label}: {what} #{i}: {key} {ids[i]} is not in the ground truth")
    return pos.astype(np.int64)


def _fast_ints(cols: dict[str, np.ndarray], key: str) -> np.ndarray | None:
    """Integer column from the fast reader, or None if any value is not an exact int literal."""
    v = cols[key]
    if not cols[key + ":int"].all() or (np.abs(v) >= 2.0 ** 53).any():
        return None
    return v.astype(np.int64)


def _fast_gt(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    from benchmark.evaluate import fastjson

    try:
        got = fastjson.read_gt(path)
    except (OSError, ValueError):
        return None
    if got is None:
        return None
    small, cols = got
    out: dict[str, Any] = {"bbox": cols["bbox"], "area": cols["area"]}
    for key in ("id", "image_id", "category_id"):
        out[key] = _fast_ints(cols, key)
        if out[key] is None:
            return None
    crowd = _fast_ints(cols, "iscrowd")
    if crowd is None:
        return None
    out["iscrowd"] = np.where(cols["iscrowd:present"], crowd, 0)
    return small, out


def load_gt(gt: Any) -> GroundTruth:
    """Read GT from a COCO JSON path, a COCO dict or a :class:`tinyset_builder.coco.CocoDataset`."""
    label = _label(gt, "<gt>")
    fast = _fast_gt(gt) if isinstance(gt, (str, os.PathLike)) else None
    if fast is not None:
        gt = {**fast[0], "annotations": None}
        cols: dict[str, Any] | None = fast[1]
    else:
        cols = None
        if isinstance(gt, (str, os.PathLike)):
            gt = read_json(gt)
        elif not isinstance(gt, Mapping) and hasattr(gt, "to_dict") and hasattr(gt, "annotations"):
            gt = gt.to_dict()
    if not isinstance(gt, Mapping):
        raise TinysetError(f"{label}: ground truth must be a COCO JSON object")
    for key in ("images", "annotations", "categories"):
        if not isinstance(gt.get(key), list) and not (cols is not None and key == "annotations"):
            raise TinysetError(f"{label}: ground truth lacks the {key!r} list")
    images, cats = gt["images"], gt["categories"]
    image_ids = _ints(_column(images, "id", label, "image"), label, "image", "id")
    _unique_ids(image_ids, label, "image")
    cat_ids = _ints(_column(cats, "id", label, "category"), label, "category", "id")
    _unique_ids(cat_ids, label, "category")
    order = np.argsort(image_ids, kind="stable")
    fields = {f: [images[i].get(f) for i in order] for f in IMAGE_FIELDS}
    image_ids, cat_ids = image_ids[order], np.sort(cat_ids)
    what = "annotation"
    if cols is None:
        anns = gt["annotations"]
        cols = {key: _ints(_column(anns, key, label, what), label, what, key)
                for key in ("id", "image_id", "category_id")}
        cols["bbox"] = _boxes(_column(anns, "bbox", label, what), label, what)
        areas = _column(anns, "area", label, what, default=None)
        if any(a is None for a in areas):
            box = cols["bbox"]
            areas = [box[i, 2] * box[i, 3] if a is None else a for i, a in enumerate(areas)]
        cols["area"] = _floats(areas, label, what, "area")
        cols["iscrowd"] = _ints(_column(anns, "iscrowd", label, what, default=0), label, what,
                                "iscrowd")
    else:
        _check_boxes(cols["bbox"], label, what)
        _check_finite(cols["area"], label, what, "area")
    ann_id = cols["id"]
    _unique_ids(ann_id, label, what)
    img = _index(cols["image_id"], image_ids, label, what, "image_id")
    cat = _index(cols["category_id"], cat_ids, label, what, "category_id")
    area = cols["area"]
    if (area < 0).any():
        i = int(np.flatnonzero(area < 0)[0])
        raise TinysetError(f"{label}: annotation #{i}: area {area[i]} is negative")
    return GroundTruth(label, image_ids, fields, cat_ids, img, cat, cols["bbox"], area,
                       cols["iscrowd"] != 0, ann_id)


def _fast_dt(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    from benchmark.evaluate import fastjson

    try:
        cols = fastjson.read_results(path)
    except (OSError, ValueError):
        return None
    if cols is None:
        return None
    out: dict[str, Any] = {"bbox": cols["bbox"], "score": cols["score"]}
    for key in ("image_id", "category_id"):
        out[key] = _fast_ints(cols, key)
        if out[key] is None:
            return None
    ids = None
    if len(cols["id"]) and cols["id:present"].all():
        ids = _fast_ints(cols, "id")
    out["id"] = ids
    return out


def load_dt(dt: Any, gt: GroundTruth) -> Detections:
    """Read COCO results (a JSON path or a list of dicts) against ``gt``."""
    label = _label(dt, "<detections>")
    what = "detection"
    cols = _fast_dt(dt) if isinstance(dt, (str, os.PathLike)) else None
    if cols is not None:
        _check_boxes(cols["bbox"], label, what)
        _check_finite(cols["score"], label, what, "score")
        if cols["id"] is not None:
            _unique_ids(cols["id"], label, what)
    else:
        if isinstance(dt, (str, os.PathLike)):
            dt = read_json(dt)
        if isinstance(dt, Mapping) and isinstance(dt.get("annotations"), list):
            dt = dt["annotations"]
        if not isinstance(dt, list):
            raise TinysetError(f"{label}: detections must be a JSON list of COCO results")
        cols = {key: _ints(_column(dt, key, label, what), label, what, key)
                for key in ("image_id", "category_id")}
        cols["bbox"] = _boxes(_column(dt, "bbox", label, what), label, what)
        cols["score"] = _floats(_column(dt, "score", label, what), label, what, "score")
        if dt and "id" in dt[0]:
            ids = [d.get("id") for d in dt]
            if all(isinstance(i, int) for i in ids):
                _unique_ids(np.asarray(ids, np.int64), label, what)
    img = _index(cols["image_id"], gt.image_ids, label, what, "image_id")
    cat = _index(cols["category_id"], gt.cat_ids, label, what, "category_id")
    box = cols["bbox"]
    # Python's float product, as loadRes computes ``bb[2] * bb[3]``.
    area = box[:, 2] * box[:, 3]
    return Detections(label, img, cat, box, cols["score"], area)


def load_prompts(prompts: Any, gt: GroundTruth) -> Prompts:
    """Read a P2SOD prompt file (docs/prompts.md) into sorted evaluation units."""
    label = _label(prompts, "<prompts>")
    if isinstance(prompts, (str, os.PathLike)):
        raw = Path(prompts).read_bytes() if Path(prompts).is_file() else None
        prompts = read_json(prompts)
        digest = hashlib.sha256(raw or b"").hexdigest()
    else:
        digest = ""
    if not isinstance(prompts, Mapping) or not isinstance(prompts.get("prompts"), list):
        raise TinysetError(f"{label}: not a prompt file (needs a 'prompts' list, see "
                           f"docs/prompts.md)")
    schema = prompts.get("schema", PROMPTS_SCHEMA)
    if schema != PROMPTS_SCHEMA:
        raise TinysetError(f"{label}: schema {schema!r} is not {PROMPTS_SCHEMA!r}")
    entries = prompts["prompts"]
    what = "prompt"
    img_ids = _ints(_column(entries, "image_id", label, what), label, what, "image_id")
    cat_ids = _ints(_column(entries, "category_id", label, what), label, what, "category_id")
    img = _index(img_ids, gt.image_ids, label, what, "image_id")
    cat = _index(cat_ids, gt.cat_ids, label, what, "category_id")
    key = img * max(len(gt.cat_ids), 1) + cat
    order = np.argsort(key, kind="stable")
    key = key[order]
    if key.size > 1 and (key[1:] == key[:-1]).any():
        i = int(np.flatnonzero(key[1:] == key[:-1])[0]) + 1
        j = order[i]
        raise TinysetError(f"{label}: prompt #{j}: (image_id {img_ids[j]}, category_id "
                           f"{cat_ids[j]}) appears twice")
    return Prompts(label, img[order], cat[order], digest, prompts.get("setting"))


@dataclass
class Units:
    """Evaluation units in accumulation order, and which GT/detection rows belong to each.

    A unit is what pycocotools calls an image: one image (default), or one ``(image, category)``
    prompt set with ``--prompts``. ``gt_unit``/``dt_unit`` are -1 for rows outside every unit.
    """

    unit_img: np.ndarray
    gt_unit: np.ndarray
    dt_unit: np.ndarray


def make_units(gt: GroundTruth, dt: Detections, prompts: Prompts | None,
               image_mask: np.ndarray | None = None) -> Units:
    """Units for the whole set, or for the images where ``image_mask`` is True."""
    n_img = len(gt.image_ids)
    keep = np.ones(n_img, bool) if image_mask is None else image_mask
    if prompts is None:
        unit_of_img = np.where(keep, np.cumsum(keep) - 1, -1)
        return Units(np.flatnonzero(keep), unit_of_img[gt.img], unit_of_img[dt.img])
    sel = keep[prompts.img]
    p_img, p_cat = prompts.img[sel], prompts.cat[sel]
    n_cat = max(len(gt.cat_ids), 1)
    pkey = p_img * n_cat + p_cat

    def lookup(img: np.ndarray, cat: np.ndarray) -> np.ndarray:
        k = img * n_cat + cat
        pos = np.searchsorted(pkey, k)
        pos_c = np.minimum(pos, max(len(pkey) - 1, 0))
        hit = (pos < len(pkey)) & (pkey[pos_c] == k) if len(pkey) else np.zeros(len(k), bool)
        return np.where(hit, pos, -1)

    return Units(p_img, lookup(gt.img, gt.cat), lookup(dt.img, dt.cat))


def image_groups(gt: GroundTruth, field: str) -> dict[str, np.ndarray]:
    """Image masks by the value of an image field (``source``/``domain``), sorted by value."""
    if field not in IMAGE_FIELDS:
        raise TinysetError(f"--by must be one of {', '.join(IMAGE_FIELDS)}, got {field!r}")
    values = ["(none)" if v is None else str(v) for v in gt.image_fields[field]]
    arr = np.asarray(values, dtype=object)
    return {v: arr == v for v in sorted(set(values))}
