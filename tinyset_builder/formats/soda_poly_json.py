"""SODA-A per-image JSON: one file per image with oriented 8-point polygons.

Each raw annotation file (``Annotations/<split>/<stem>.json``) holds::

    {"images": {"id": 1, "file_name": "00001.jpg", "height": 2777, "width": 4761},
     "annotations": [{"id": 1, "image_id": 1, "category_id": 2,
                      "poly": [1203.0, 455.0, 1215.0, 451.0, 1218.0, 459.0, 1206.0, 463.0]}],
     "categories": [{"id": 0, "name": "airplane"}, ..., {"id": 9, "name": "ignore"}]}

``poly`` is ``[x1, y1, ..., x4, y4]`` in absolute pixels (an oriented quadrilateral); the
horizontal box is the min/max of its points (what torchgeo does). Variants accepted:

- ``images`` is a dict or a one-element list (both occur, per a third-party loader);
- some polygons have **more than 8 numbers**: the official loader skips them, this reader keeps
  the min/max box and reports the count in :attr:`SodaPolygon.numbers`;
- some annotation files are **empty** (0 bytes): :attr:`SodaAnnotationFile.empty` is set and the
  caller decides (the official loader skips the image).

The patch files the official splitter writes use other keys (``cat_id``, ``filename``); they are
not this format.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tinyset_builder.boxes import polygon_to_xywh
from tinyset_builder.errors import ErrorPolicy, where
from tinyset_builder.formats.text import read_text_or_skip
from tinyset_builder.io import write_json


@dataclass(frozen=True, slots=True)
class SodaPolygon:
    """One annotation: its native category id and polygon; ``location`` names file and record."""

    location: str
    category_id: int
    coords: tuple[float, ...]

    @property
    def numbers(self) -> int:
        """How many coordinates the polygon has (8 for the documented quadrilateral)."""
        return len(self.coords)

    @property
    def xywh(self) -> tuple[float, float, float, float]:
        """The horizontal bounding box ``[x, y, w, h]`` (min/max of the points)."""
        return polygon_to_xywh(self.coords)


@dataclass(frozen=True, slots=True)
class SodaAnnotationFile:
    """One parsed per-image file; ``empty`` for a 0-byte (or blank) file."""

    path: Path
    empty: bool = False
    file_name: str | None = None
    width: int | None = None
    height: int | None = None
    polygons: list[SodaPolygon] = field(default_factory=list)


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _image_info(images: object) -> Mapping[str, Any] | str:
    """The image dict from a dict or one-element list, or a reason string."""
    if isinstance(images, list):
        if len(images) != 1:
            return f"'images' list must hold exactly one image, got {len(images)}"
        images = images[0]
    if not isinstance(images, Mapping):
        return f"'images' must be an object or a one-element list, got {images!r}"
    return images


def read_soda_a_json(path: Path, policy: ErrorPolicy) -> SodaAnnotationFile | None:
    """Parse one SODA-A annotation file; bad records go through ``policy``.

    Returns ``None`` (after reporting) when the whole file is unusable (invalid JSON, no
    ``annotations`` list, a malformed ``images`` entry).

    Raises:
        SourceError: the file does not exist.
    """
    text = read_text_or_skip(path, policy)
    if text is None:
        return None
    if not text.strip():
        return SodaAnnotationFile(path=path, empty=True)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        policy.fail(where(path, e.lineno), f"invalid JSON ({e.msg}, column {e.colno})")
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("annotations"), list):
        policy.fail(str(path), "expected an object with an 'annotations' list")
        return None
    image: Mapping[str, Any] = {}
    if "images" in doc:
        info = _image_info(doc["images"])
        if isinstance(info, str):
            policy.fail(where(path, "images"), info)
            return None
        image = info
    polygons = []
    for i, ann in enumerate(doc["annotations"]):
        loc = where(path, f"annotations[{i}]")
        if not isinstance(ann, dict):
            policy.fail(loc, f"annotation must be an object, got {ann!r}")
            continue
        cat, poly = ann.get("category_id"), ann.get("poly")
        if not isinstance(cat, int) or isinstance(cat, bool):
            policy.fail(loc, f"category_id must be an integer, got {cat!r}")
            continue
        if not (isinstance(poly, list) and len(poly) >= 8 and len(poly) % 2 == 0
                and all(map(_is_number, poly))):
            policy.fail(loc, f"poly must be an even list of >= 8 finite numbers, got {poly!r}")
            continue
        polygons.append(SodaPolygon(loc, cat, tuple(float(v) for v in poly)))
    name, w, h = image.get("file_name"), image.get("width"), image.get("height")
    return SodaAnnotationFile(
        path=path, file_name=name if isinstance(name, str) and name else None,
        width=w if isinstance(w, int) and not isinstance(w, bool) else None,
        height=h if isinstance(h, int) and not isinstance(h, bool) else None,
        polygons=polygons)


def soda_a_document(file_name: str, width: int, height: int,
                    polygons: Sequence[tuple[int, Sequence[float]]],
                    categories: Sequence[tuple[int, str]], *, image_id: int = 1,
                    images_as_list: bool = False) -> dict[str, Any]:
    """A raw per-image SODA-A document (used by the synthesizer, so writer and reader agree).

    Args:
        file_name, width, height: the image.
        polygons: ``(category_id, [x1, y1, ..., x4, y4])`` per object.
        categories: ``(id, name)`` pairs, the ignore class last.
        image_id: the ``images.id`` value.
        images_as_list: write ``images`` as a one-element list (the other variant seen).
    """
    image = {"id": image_id, "file_name": file_name, "height": height, "width": width}
    anns = []
    for k, (cat, poly) in enumerate(polygons, start=1):
        box = polygon_to_xywh(poly)
        anns.append({"id": k, "image_id": image_id, "category_id": cat,
                     "area": round(box[2] * box[3], 2), "poly": [float(v) for v in poly]})
    return {"images": [image] if images_as_list else image, "annotations": anns,
            "categories": [{"id": i, "name": n} for i, n in categories]}


def write_soda_a_json(path: Path, document: Mapping[str, Any]) -> Path:
    """Write one per-image document atomically and deterministically."""
    return write_json(path, document)
