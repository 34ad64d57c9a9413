"""COCO detection JSON as the sources ship it (AI-TOD, HRSID, SARDet-100K, RGBT-Tiny, COCO, SODA-D,
LIVECell), read into small frozen records that keep the file and record for every error.

The format: ``{"images": [...], "annotations": [...], "categories": [...]}`` with
``bbox = [x, y, w, h]`` in absolute pixels (top-left corner, continuous coordinates). Variants met
in the wild and accepted here:

- ``annotations`` may be a dict keyed by annotation id (LIVECell) instead of a list;
- category ids may start at 0 (HRSID, SARDet-100K) or be non-contiguous (COCO 1..90), so every
  annotation is resolved to its category *name* through the file's own ``categories`` table;
- ``iscrowd: 1`` (COCO, SARDet-100K) and ``ignore: true``/``1`` (mmdet-style exports) both mark a
  region the evaluation ignores: :attr:`CocoJsonAnnotation.ignore`;
- a missing ``bbox`` is derived from the polygon ``segmentation`` (LIVECell's bbox presence is
  unconfirmed); RLE-only records without a bbox are bad records.

Sample (COCO val2017, trimmed)::

    {"images": [{"id": 139, "file_name": "000000000139.jpg", "width": 640, "height": 426}],
     "annotations": [{"id": 1666628, "image_id": 139, "category_id": 85,
                      "bbox": [447.77, 121.12, 13.97, 21.88], "iscrowd": 0}],
     "categories": [{"id": 85, "name": "clock"}]}
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tinyset_builder.boxes import polygon_to_xywh
from tinyset_builder.errors import ErrorPolicy, where
from tinyset_builder.formats.text import read_text_or_skip
from tinyset_builder.io import write_json

#: Annotation keys this reader interprets; all others are kept in ``extra``.
_ANN_CORE = frozenset({"id", "image_id", "category_id", "bbox", "area", "iscrowd", "ignore",
                       "segmentation"})
_IMAGE_CORE = frozenset({"id", "file_name", "width", "height"})


@dataclass(frozen=True, slots=True)
class CocoJsonImage:
    """One ``images`` entry; ``location`` is ``"<file>:images[<i>]"`` for error messages."""

    location: str
    id: int | str
    file_name: str
    width: int | None
    height: int | None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CocoJsonAnnotation:
    """One annotation with its category resolved to the file's category name."""

    location: str
    id: Any
    image_id: int | str
    category_id: int | str
    category: str
    xywh: tuple[float, float, float, float]
    ignore: bool
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CocoJsonFile:
    """A parsed COCO JSON file: images in file order, annotations in file order."""

    path: Path
    images: list[CocoJsonImage]
    annotations: list[CocoJsonAnnotation]
    categories: dict[int | str, str]

    def annotations_by_image(self) -> dict[int | str, list[CocoJsonAnnotation]]:
        """Annotations grouped by image id, in file order (images without boxes absent)."""
        out: dict[int | str, list[CocoJsonAnnotation]] = {}
        for a in self.annotations:
            out.setdefault(a.image_id, []).append(a)
        return out


def _is_id(v: object) -> bool:
    return (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, str) and v != "")


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _annotation_items(anns: object) -> Iterator[tuple[str, object]]:
    """``(record label, raw record)`` for a list (``annotations[i]``) or LIVECell's dict."""
    if isinstance(anns, Mapping):
        for key, value in anns.items():
            yield f"annotations[{key!r}]", value
    else:
        assert isinstance(anns, list)
        for i, value in enumerate(anns):
            yield f"annotations[{i}]", value


def _box_from(raw: Mapping[str, Any]) -> tuple[float, float, float, float] | str:
    """The record's ``[x, y, w, h]``, from ``bbox`` or else its polygons; or a reason string."""
    bbox = raw.get("bbox")
    if bbox is not None:
        if not (isinstance(bbox, Sequence) and len(bbox) == 4 and all(map(_is_number, bbox))):
            return f"bbox {bbox!r} is not four finite numbers"
        return (float(bbox[0]), float(bbox[1]), float(bbox[2]), float(bbox[3]))
    seg = raw.get("segmentation")
    if isinstance(seg, list) and seg and all(isinstance(p, list) for p in seg):
        coords = [v for poly in seg for v in poly]
        if len(coords) >= 6 and len(coords) % 2 == 0 and all(map(_is_number, coords)):
            return polygon_to_xywh([float(v) for v in coords])
        return f"no bbox, and segmentation {seg!r} is not a polygon list"
    return "no bbox and no polygon segmentation to derive one from"


def read_coco_json(path: Path, policy: ErrorPolicy, *,
                   implicit_categories: Mapping[int, str] | None = None) -> CocoJsonFile | None:
    """Parse one COCO JSON file; bad records go through ``policy``.

    ``implicit_categories`` (id → name) are categories a source uses without always listing
    them in ``categories`` (SODA-D's ignore id 10); listed ones take precedence.

    Returns ``None`` (after reporting through ``policy``) when the file as a whole is unusable:
    invalid JSON, or no ``images``/``annotations``/``categories`` of the right types.

    Raises:
        SourceError: the file does not exist (a layout problem, never skippable).
    """
    text = read_text_or_skip(path, policy)
    if text is None:
        return None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        policy.fail(where(path, e.lineno), f"invalid JSON ({e.msg}, column {e.colno})")
        return None
    if not isinstance(doc, dict):
        policy.fail(str(path), f"expected a COCO JSON object, got {type(doc).__name__}")
        return None
    images_raw, anns_raw, cats_raw = (doc.get(k) for k in ("images", "annotations", "categories"))
    if not (isinstance(images_raw, list) and isinstance(anns_raw, (list, dict))
            and isinstance(cats_raw, list)):
        policy.fail(str(path), "expected lists 'images' and 'categories' and a list or dict "
                               "'annotations'")
        return None

    categories: dict[int | str, str] = {}
    for i, c in enumerate(cats_raw):
        loc = where(path, f"categories[{i}]")
        if not (isinstance(c, dict) and _is_id(c.get("id")) and isinstance(c.get("name"), str)
                and c["name"]):
            policy.fail(loc, f"category needs an id and a name, got {c!r}")
            continue
        if c["id"] in categories:
            policy.fail(loc, f"duplicate category id {c['id']!r}")
            continue
        categories[c["id"]] = c["name"]

    for cid, name in (implicit_categories or {}).items():
        categories.setdefault(cid, name)

    images: list[CocoJsonImage] = []
    image_ids: set[int | str] = set()
    for i, im in enumerate(images_raw):
        loc = where(path, f"images[{i}]")
        if not (isinstance(im, dict) and _is_id(im.get("id"))
                and isinstance(im.get("file_name"), str) and im["file_name"]):
            policy.fail(loc, f"image needs an id and a file_name, got {im!r}")
            continue
        if im["id"] in image_ids:
            policy.fail(loc, f"duplicate image id {im['id']!r}")
            continue
        w, h = im.get("width"), im.get("height")
        image_ids.add(im["id"])
        images.append(CocoJsonImage(
            location=loc, id=im["id"], file_name=im["file_name"],
            width=w if isinstance(w, int) and not isinstance(w, bool) else None,
            height=h if isinstance(h, int) and not isinstance(h, bool) else None,
            extra={k: v for k, v in im.items() if k not in _IMAGE_CORE}))

    annotations: list[CocoJsonAnnotation] = []
    for label, a in _annotation_items(anns_raw):
        loc = where(path, label)
        if not isinstance(a, dict):
            policy.fail(loc, f"annotation must be an object, got {a!r}")
            continue
        if not _is_id(a.get("image_id")) or a["image_id"] not in image_ids:
            policy.fail(loc, f"annotation {a.get('id')!r} refers to unknown image "
                             f"{a.get('image_id')!r}")
            continue
        cat_id = a.get("category_id")
        if not _is_id(cat_id) or cat_id not in categories:
            policy.fail(loc, f"unknown category_id {cat_id!r} (the file defines "
                             f"{sorted(categories, key=str)})")
            continue
        box = _box_from(a)
        if isinstance(box, str):
            policy.fail(loc, box)
            continue
        ignore = a.get("iscrowd") in (1, True) or a.get("ignore") in (1, True)
        annotations.append(CocoJsonAnnotation(
            location=loc, id=a.get("id"), image_id=a["image_id"], category_id=cat_id,
            category=categories[cat_id], xywh=box, ignore=ignore,
            extra={k: v for k, v in a.items() if k not in _ANN_CORE}))
    return CocoJsonFile(path=path, images=images, annotations=annotations, categories=categories)


def coco_json_document(images: Sequence[Mapping[str, Any]],
                       annotations: Sequence[Mapping[str, Any]],
                       categories: Sequence[tuple[int, str]], *,
                       annotations_as_dict: bool = False,
                       info: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A native COCO JSON document (used by the synthesizers, so writer and reader agree).

    Args:
        images: image dicts (``id``, ``file_name``, ``width``, ``height``, extras).
        annotations: annotation dicts; ``area`` is filled from the bbox when absent.
        categories: ``(id, name)`` pairs in the source's native id order.
        annotations_as_dict: write ``annotations`` as a dict keyed by id (LIVECell's layout).
        info: the optional ``info`` block.
    """
    anns = []
    for a in annotations:
        d = dict(a)
        if "bbox" in d and "area" not in d:
            d["area"] = float(d["bbox"][2]) * float(d["bbox"][3])
        d.setdefault("iscrowd", 0)
        anns.append(d)
    doc: dict[str, Any] = {"info": dict(info or {"description": "tinyset synthetic"}),
                           "images": [dict(i) for i in images]}
    doc["annotations"] = {str(a["id"]): a for a in anns} if annotations_as_dict else anns
    doc["categories"] = [{"id": i, "name": n, "supercategory": ""} for i, n in categories]
    return doc


def write_coco_json(path: Path, document: Mapping[str, Any]) -> Path:
    """Write a COCO JSON document atomically and deterministically."""
    return write_json(path, document)
