"""COCO records: the one value type that flows from the converters to the evaluator.

Records are frozen dataclasses validated at construction, so a bad box or a negative size is
caught where it is made, with a message that says what was expected and what was got. Raw JSON is
parsed into these types at the edge (:meth:`CocoDataset.from_dict`) and written back with a stable
key order (:meth:`CocoDataset.to_dict`), so the same data always gives the same bytes.

Provenance (DESIGN.md, "Built dataset"): every image may carry ``source``, ``domain``, ``split``,
``original_file``, ``window`` (``[x0, y0, x1, y1]`` in the original image's pixels) and ``scale``
(output pixels per original pixel). Converters set ``window`` to the whole image and ``scale`` to 1;
the build's crop-or-pad step narrows them.

Example:
    >>> img = CocoImage(id=1, file_name="a.jpg", width=640, height=480)
    >>> ann = CocoAnnotation(id=1, image_id=1, category_id=1, bbox=(10, 20, 4, 3))
    >>> ann.area
    12.0
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tinyset_builder.errors import TinysetError
from tinyset_builder.io import atomic_path, dumps_json, read_json

PROVENANCE_KEYS = ("source", "domain", "split", "original_file", "window", "scale")
_IMAGE_KEYS = ("id", "file_name", "width", "height", *PROVENANCE_KEYS)
_ANNOTATION_KEYS = ("id", "image_id", "category_id", "bbox", "area", "iscrowd")
SPLITS = ("train", "val", "test")


class _NoExtra(Mapping[str, Any]):
    """The empty, immutable ``extra`` shared by every record without extra keys.

    Most records have none, and an empty ``dict`` per record would cost 64 bytes each (plus a
    pointer): at millions of boxes per source that was a tenth of a converted source's memory.
    It compares equal to ``{}``, pickles and copies to itself, and cannot be mutated.
    """

    __slots__ = ()
    _one: _NoExtra | None = None

    def __new__(cls) -> _NoExtra:
        if cls._one is None:
            cls._one = super().__new__(cls)
        return cls._one

    def __getitem__(self, key: str) -> Any:
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0

    def __hash__(self) -> int:
        return 0

    def __reduce__(self) -> tuple[type[_NoExtra], tuple[()]]:
        return (_NoExtra, ())

    def __repr__(self) -> str:
        return "{}"


#: A record's ``extra`` when it has none (records normalise any empty mapping to it).
NO_EXTRA: Mapping[str, Any] = _NoExtra()


class RecordError(TinysetError, ValueError):
    """A record violates its invariants (e.g. a box with zero width)."""


def _finite(name: str, values: Iterable[float]) -> None:
    for v in values:
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
            raise RecordError(f"{name} must hold finite numbers, got {v!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class CocoCategory:
    """One category. TinySet names them ``"<source>/<name>"`` (DESIGN.md)."""

    id: int
    name: str
    supercategory: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.id, int) or isinstance(self.id, bool):
            raise RecordError(f"category id must be an int, got {self.id!r}")
        if not self.name:
            raise RecordError(f"category {self.id} has an empty name")

    def to_dict(self) -> dict[str, Any]:
        """COCO dict in the stable key order ``id, name, supercategory``."""
        return {"id": self.id, "name": self.name, "supercategory": self.supercategory}


@dataclass(frozen=True, slots=True, kw_only=True)
class CocoImage:
    """One image, with the optional provenance fields of DESIGN.md."""

    id: int
    file_name: str
    width: int
    height: int
    source: str | None = None
    domain: str | None = None
    split: str | None = None
    original_file: str | None = None
    window: tuple[int, int, int, int] | None = None
    scale: float | None = None
    extra: Mapping[str, Any] = NO_EXTRA

    def __post_init__(self) -> None:
        if not isinstance(self.id, int) or isinstance(self.id, bool):
            raise RecordError(f"image id must be an int, got {self.id!r}")
        if not self.extra and self.extra is not NO_EXTRA:
            object.__setattr__(self, "extra", NO_EXTRA)
        if not self.file_name:
            raise RecordError(f"image {self.id} has an empty file_name")
        for name in ("width", "height"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise RecordError(f"image {self.id} ({self.file_name}): {name} must be a "
                                  f"positive int, got {v!r}")
        if self.window is not None:
            if len(self.window) != 4:
                raise RecordError(f"image {self.id}: window must be [x0, y0, x1, y1], "
                                  f"got {self.window!r}")
            x0, y0, x1, y1 = self.window
            if not (x1 > x0 and y1 > y0):
                raise RecordError(f"image {self.id}: window {list(self.window)} is empty")
            object.__setattr__(self, "window", tuple(self.window))
        if self.scale is not None:
            _finite(f"image {self.id} scale", [self.scale])
            if self.scale <= 0:
                raise RecordError(f"image {self.id}: scale must be > 0, got {self.scale}")

    def to_dict(self) -> dict[str, Any]:
        """COCO dict: core keys, then provenance keys that are set, then extras sorted by key."""
        d: dict[str, Any] = {"id": self.id, "file_name": self.file_name,
                             "width": self.width, "height": self.height}
        for key in PROVENANCE_KEYS:
            v = getattr(self, key)
            if v is not None:
                d[key] = list(v) if key == "window" else v
        for key in sorted(self.extra):
            d[key] = self.extra[key]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CocoImage:
        """Parse a COCO image dict; unknown keys are kept in ``extra``."""
        try:
            window = d.get("window")
            return cls(id=d["id"], file_name=d["file_name"], width=d["width"],
                       height=d["height"], source=d.get("source"), domain=d.get("domain"),
                       split=d.get("split"), original_file=d.get("original_file"),
                       window=tuple(window) if window is not None else None,
                       scale=d.get("scale"),
                       extra={k: v for k, v in d.items() if k not in _IMAGE_KEYS})
        except KeyError as e:
            raise RecordError(f"image record {d.get('id', '?')} lacks key {e}") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class CocoAnnotation:
    """One box. ``bbox`` is ``[x, y, w, h]`` in pixels; ``iscrowd=1`` marks an ignore region.

    ``area`` defaults to ``w·h`` (DESIGN.md). Extra keys (``point``, ``clean_bbox``,
    ``segmentation``, a source's attributes) live in ``extra`` and are written after the core keys.
    """

    id: int
    image_id: int
    category_id: int
    bbox: tuple[float, float, float, float]
    area: float = -1.0
    iscrowd: int = 0
    extra: Mapping[str, Any] = NO_EXTRA

    def __post_init__(self) -> None:
        if not self.extra and self.extra is not NO_EXTRA:
            object.__setattr__(self, "extra", NO_EXTRA)
        if len(self.bbox) != 4:
            raise RecordError(f"annotation {self.id}: bbox must be [x, y, w, h], got {self.bbox!r}")
        _finite(f"annotation {self.id} bbox", self.bbox)
        object.__setattr__(self, "bbox", tuple(self.bbox))
        if self.bbox[2] <= 0 or self.bbox[3] <= 0:
            raise RecordError(f"annotation {self.id}: bbox width and height must be > 0, "
                              f"got {list(self.bbox)}")
        if self.area == -1.0:
            object.__setattr__(self, "area", float(self.bbox[2] * self.bbox[3]))
        _finite(f"annotation {self.id} area", [self.area])
        if self.area < 0:
            raise RecordError(f"annotation {self.id}: area must be >= 0, got {self.area}")
        if self.iscrowd not in (0, 1) or isinstance(self.iscrowd, bool):
            raise RecordError(f"annotation {self.id}: iscrowd must be 0 or 1, got {self.iscrowd!r}")

    def to_dict(self) -> dict[str, Any]:
        """COCO dict: ``id, image_id, category_id, bbox, area, iscrowd``, then extras sorted."""
        d: dict[str, Any] = {"id": self.id, "image_id": self.image_id,
                             "category_id": self.category_id, "bbox": list(self.bbox),
                             "area": self.area, "iscrowd": self.iscrowd}
        for key in sorted(self.extra):
            d[key] = self.extra[key]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CocoAnnotation:
        """Parse a COCO annotation dict; unknown keys are kept in ``extra``."""
        try:
            return cls(id=d["id"], image_id=d["image_id"], category_id=d["category_id"],
                       bbox=tuple(d["bbox"]), area=d.get("area", -1.0),
                       iscrowd=int(d.get("iscrowd", 0)),
                       extra={k: v for k, v in d.items() if k not in _ANNOTATION_KEYS})
        except KeyError as e:
            raise RecordError(f"annotation record {d.get('id', '?')} lacks key {e}") from None
        except (TypeError, ValueError) as e:
            if isinstance(e, RecordError):
                raise
            raise RecordError(f"annotation record {d.get('id', '?')}: {e}") from None


@dataclass(slots=True)
class CocoDataset:
    """A COCO detection dataset: images, annotations, categories and a free ``info`` dict."""

    images: list[CocoImage] = field(default_factory=list)
    annotations: list[CocoAnnotation] = field(default_factory=list)
    categories: list[CocoCategory] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """Check ids are unique and every reference resolves; raise :class:`RecordError`."""
        image_ids = _unique("image", (i.id for i in self.images))
        cat_ids = _unique("category", (c.id for c in self.categories))
        _unique("annotation", (a.id for a in self.annotations))
        for a in self.annotations:
            if a.image_id not in image_ids:
                raise RecordError(f"annotation {a.id} refers to unknown image {a.image_id}")
            if a.category_id not in cat_ids:
                raise RecordError(f"annotation {a.id} refers to unknown category {a.category_id}")

    def to_dict(self) -> dict[str, Any]:
        """COCO dict with keys ``info, images, annotations, categories`` in that order."""
        return {"info": self.info,
                "images": [i.to_dict() for i in self.images],
                "annotations": [a.to_dict() for a in self.annotations],
                "categories": [c.to_dict() for c in self.categories]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CocoDataset:
        """Parse a COCO dict. ``annotations`` may be a list or, as in LIVECell, a dict by id."""
        anns = d.get("annotations", [])
        if isinstance(anns, Mapping):
            anns = list(anns.values())
        return cls(images=[CocoImage.from_dict(i) for i in d.get("images", [])],
                   annotations=[CocoAnnotation.from_dict(a) for a in anns],
                   categories=[CocoCategory(id=c["id"], name=c["name"],
                                            supercategory=c.get("supercategory", ""))
                               for c in d.get("categories", [])],
                   info=dict(d.get("info", {})))

    def save(self, path: str | Path) -> Path:
        """Validate, then write atomically as compact, stable JSON.

        The bytes are those of ``write_json(path, self.to_dict())``, written a few thousand
        records at a time: the dicts and the text of a whole crowded source (millions of
        boxes) are never in memory at once.
        """
        self.validate()

        def dumps(obj: Any) -> bytes:
            return dumps_json(obj)[:-1]  # without the trailing newline

        def records(name: str, items: Sequence[Any]) -> Iterator[bytes]:
            yield b',"' + name.encode() + b'":['
            for start in range(0, len(items), 4096):
                chunk = [r.to_dict() for r in items[start:start + 4096]]
                yield (b"," if start else b"") + dumps(chunk)[1:-1]
            yield b"]"

        with atomic_path(path) as tmp, tmp.open("wb") as f:
            f.write(b'{"info":' + dumps(self.info))
            for name, items in (("images", self.images), ("annotations", self.annotations),
                                ("categories", self.categories)):
                f.writelines(records(name, items))
            f.write(b"}\n")
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> CocoDataset:
        """Read a COCO JSON file; errors name the file."""
        try:
            return cls.from_dict(read_json(path))
        except RecordError as e:
            raise RecordError(f"{path}: {e}") from None

    def annotations_by_image(self) -> dict[int, list[CocoAnnotation]]:
        """Annotations grouped by image id (every image present, possibly with an empty list)."""
        out: dict[int, list[CocoAnnotation]] = {i.id: [] for i in self.images}
        for a in self.annotations:
            out.setdefault(a.image_id, []).append(a)
        return out


def _unique(kind: str, ids: Iterable[int]) -> set[int]:
    seen: set[int] = set()
    for i in ids:
        if i in seen:
            raise RecordError(f"duplicate {kind} id {i}")
        seen.add(i)
    return seen


def category_index(categories: Sequence[CocoCategory]) -> dict[str, int]:
    """Map category name → id."""
    return {c.name: c.id for c in categories}
