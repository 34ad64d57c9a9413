"""What every source converter shares: its manifest record and the dataset assembler.

A source module (``tinyset_builder/sources/<name>.py``) exposes two functions::

    def convert(root: Path, info: SourceInfo, policy: ErrorPolicy) -> CocoDataset
    def synthesize(root: Path, seed: int) -> SynthSummary

``convert`` reads ``RAW/<name>/`` in the source's native layout and returns the whole source as
one COCO dataset in *original* pixels: every image carries ``source``, ``domain``, ``split``,
``original_file`` (relative to the root), ``window = [0, 0, w, h]`` and ``scale = 1``; categories
are named ``"<source>/<name>"``. It builds that dataset through :class:`SourceAssembler`, which does
the checks every source needs in one place (paths stay inside the root, sizes come from headers,
boxes are finite, clipped to the image and counted when clipped, categories are known), so a
source module is its native-format parser plus its quirks.

``synthesize`` writes a miniature copy of the source in the same native layout (the test fixture
and the demo's default input) and returns what it wrote, so tests can compare counts.
"""

from __future__ import annotations

import tomllib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tinyset_builder.boxes import clip_xywh
from tinyset_builder.coco import (
    NO_EXTRA,
    SPLITS,
    CocoAnnotation,
    CocoCategory,
    CocoDataset,
    CocoImage,
)
from tinyset_builder.errors import ErrorPolicy, SourceError, TinysetError
from tinyset_builder.imageio import image_size
from tinyset_builder.paths import safe_join

Domain = Literal["satellite", "uav", "daily-life", "driving", "microscopy", "agriculture"]
DOMAINS: tuple[Domain, ...] = ("satellite", "uav", "daily-life", "driving", "microscopy",
                               "agriculture")
MANIFEST_DIR = Path(__file__).resolve().parents[2] / "manifests" / "sources"


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceInfo:
    """A source's manifest (``manifests/sources/<name>.toml``), validated on load.

    Attributes:
        name: manifest name, also the folder under ``RAW/`` and the category prefix.
        title: the dataset's own name, as the paper cites it.
        domain: one of the paper's six domains.
        homepage, license, citation: where it comes from and on what terms.
        native_format: the format family read (e.g. ``"voc-xml"``, ``"coco-json"``).
        layout: the expected folder tree under ``RAW/<name>/``, as the download unpacks.
        download: how to obtain it (shown by ``tinyset sources check`` when it is missing).
        categories: the source's own category names, in the source's id order.
        ignore: how ignore / crowd regions are handled.
        identity: ``"confirmed"`` or a note on why this candidate was chosen.
        splits: how the source's official split maps to train/val/test.
        expected: known counts of the full source (``images``, ``annotations``).
        build: per-source build policy (e.g. ``downscale``), read by the build step.
    """

    name: str
    title: str
    domain: Domain
    homepage: str
    license: str
    citation: str
    native_format: str
    layout: str
    download: str
    categories: tuple[str, ...]
    ignore: str = ""
    identity: str = "confirmed"
    splits: Mapping[str, str] = field(default_factory=dict)
    expected: Mapping[str, int] = field(default_factory=dict)
    build: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.domain not in DOMAINS:
            raise TinysetError(f"source {self.name}: domain {self.domain!r} not in {DOMAINS}")
        if not self.categories:
            raise TinysetError(f"source {self.name}: no categories")
        if len(set(self.categories)) != len(self.categories):
            raise TinysetError(f"source {self.name}: duplicate category names")

    def category_name(self, name: str) -> str:
        """The TinySet category name ``"<source>/<name>"``."""
        return f"{self.name}/{name}"


def load_info(name: str, manifest_dir: Path = MANIFEST_DIR) -> SourceInfo:
    """Load and validate ``manifests/sources/<name>.toml``."""
    path = manifest_dir / f"{name}.toml"
    try:
        with path.open("rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise TinysetError(f"{path}: no manifest for source {name!r}") from None
    except tomllib.TOMLDecodeError as e:
        raise TinysetError(f"{path}: invalid TOML ({e})") from None
    if raw.get("name") != name:
        raise TinysetError(f"{path}: name = {raw.get('name')!r}, expected {name!r}")
    raw["categories"] = tuple(raw.get("categories", ()))
    try:
        return SourceInfo(**raw)
    except TypeError as e:
        raise TinysetError(f"{path}: {e}") from None


@dataclass(frozen=True, slots=True)
class SynthSummary:
    """What ``synthesize`` wrote: the counts a correct converter must reproduce.

    ``annotations`` counts every annotation the converter should emit, ignore regions included;
    ``ignore`` counts those with ``iscrowd=1``; ``splits`` counts images per split.
    """

    images: int
    annotations: int
    ignore: int = 0
    splits: Mapping[str, int] = field(default_factory=dict)


@dataclass
class _PendingImage:
    file_name: str
    width: int
    height: int
    split: str | None
    boxes: list[tuple[tuple[float, float, float, float], int, int, dict[str, Any]]] = \
        field(default_factory=list)


class SourceAssembler:
    """Collects one source's images and boxes, checking each, and emits a :class:`CocoDataset`.

    Image ids follow the sorted ``file_name`` (1, 2, ...), annotation ids the image order and then
    the order boxes were added, so output does not depend on directory listing order.

    Attributes:
        counts: what happened to input boxes beyond plain acceptance: ``clipped_to_image``,
            and ``dropped_<reason>`` for annotations a converter leaves out by design (e.g.
            LIVECell's second annotation of the same image); they land in ``info["counts"]`` and
            in the build's accounting, so nothing disappears unexplained.
    """

    def __init__(self, info: SourceInfo, root: Path, policy: ErrorPolicy) -> None:
        self.info = info
        self.root = root
        self.policy = policy
        self.counts: Counter[str] = Counter()
        self._cat_ids = {name: i for i, name in enumerate(info.categories, start=1)}
        self._images: dict[str, _PendingImage] = {}
        self._extras: dict[tuple[tuple[str, type, Any], ...], dict[str, Any]] = {}

    def path(self, relative: str, *, location: str = "") -> Path:
        """Resolve a file name from an annotation safely under the source root."""
        return safe_join(self.root, relative, location=location)

    def add_image(self, relative: str, *, split: str | None, width: int | None = None,
                  height: int | None = None, location: str = "") -> str | None:
        """Register an image (path relative to the root); returns its key, or None if skipped.

        ``split`` is the source's *official* split (``train``/``val``/``test``), or ``None`` when
        the source has none; the build then assigns one by a stable hash of the original image.
        The size is read from the image header when not given. A missing or unreadable image is
        reported through the policy.
        """
        if split is not None and split not in SPLITS:
            raise SourceError(f"{location or relative}: split {split!r} not in {SPLITS}")
        key = relative.replace("\\", "/")
        if key in self._images:
            return key
        try:
            path = self.path(key)
            if width is None or height is None:
                width, height = image_size(path)
        except SourceError as e:
            self.policy.fail(location or key, str(e))
            return None
        if not (isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0):
            self.policy.fail(location or key, f"image size must be positive ints, got "
                                              f"{width!r}x{height!r}")
            return None
        self._images[key] = _PendingImage(key, width, height, split)
        return key

    def image_size(self, image: str) -> tuple[int, int]:
        """``(width, height)`` of a registered image, e.g. to scale normalised YOLO boxes."""
        img = self._images[image]
        return img.width, img.height

    def add_box(self, image: str, xywh: tuple[float, float, float, float], category: str, *,
                location: str, iscrowd: bool = False, extra: Mapping[str, Any] | None = None,
                ) -> bool:
        """Add a box ``[x, y, w, h]`` in pixels of the original image; returns False if skipped.

        A box partly outside the image is clipped to it (counted as ``clipped_to_image``); a box
        with non-finite numbers, a non-positive size, no overlap with the image, or an unknown
        category is a bad record, reported through the policy.
        """
        img = self._images[image]
        cat_id = self._cat_ids.get(category)
        if cat_id is None:
            self.policy.fail(location, f"unknown category {category!r} (known: "
                                       f"{', '.join(self.info.categories)})")
            return False
        try:
            x, y, w, h = (float(v) for v in xywh)
        except (TypeError, ValueError):
            self.policy.fail(location, f"box {xywh!r} is not four numbers")
            return False
        if not all(abs(v) < float("inf") for v in (x, y, w, h)):
            self.policy.fail(location, f"box {[x, y, w, h]} has a non-finite value")
            return False
        if w <= 0 or h <= 0:
            self.policy.fail(location, f"box {[x, y, w, h]} has non-positive width or height")
            return False
        clipped = clip_xywh((x, y, w, h), img.width, img.height)
        if clipped[2] <= 0 or clipped[3] <= 0:
            self.policy.fail(location, f"box {[x, y, w, h]} lies outside the "
                                       f"{img.width}x{img.height} image")
            return False
        if clipped != (x, y, w, h):
            self.counts["clipped_to_image"] += 1
        img.boxes.append((clipped, cat_id, int(iscrowd), self._shared(extra)))
        return True

    def _shared(self, extra: Mapping[str, Any] | None) -> Mapping[str, Any]:
        """``extra`` as a dict shared by every box with the same attributes, where that is safe.

        Crowded sources repeat a few attribute sets millions of times (JHU-CROWD++: occlusion
        1-3 × blur 0/1 on 1.5 M heads), and records never mutate their ``extra``, so equal sets
        share one dict (and boxes without attributes share :data:`NO_EXTRA`). Only str, int and
        bool values are shared, matched with their type (``1`` and ``True`` stay apart); floats
        are not (``0.0`` and ``-0.0`` are equal but print differently), nor lists.
        """
        if not extra:
            return NO_EXTRA
        if all(type(v) in (str, int, bool) for v in extra.values()):
            key = tuple((k, type(v), v) for k, v in extra.items())
            shared = self._extras.get(key)
            if shared is None:
                shared = self._extras[key] = dict(extra)
            return shared
        return dict(extra)

    def finish(self) -> CocoDataset:
        """Emit the dataset: sorted images, sequential ids, provenance on every image.

        Call it once, at the end: it hands the boxes over to the dataset.
        """
        ds = CocoDataset(
            categories=[CocoCategory(id=i, name=self.info.category_name(n),
                                     supercategory=self.info.name)
                        for n, i in self._cat_ids.items()],
            info={"source": self.info.name, "title": self.info.title,
                  "counts": dict(sorted(self.counts.items()))})
        ann_id = 0
        for image_id, key in enumerate(sorted(self._images), start=1):
            p = self._images[key]
            ds.images.append(CocoImage(id=image_id, file_name=key, width=p.width,
                                       height=p.height, source=self.info.name,
                                       domain=self.info.domain, split=p.split,
                                       original_file=key, window=(0, 0, p.width, p.height),
                                       scale=1.0))
            for box, cat_id, crowd, extra in p.boxes:
                ann_id += 1
                ds.annotations.append(CocoAnnotation(id=ann_id, image_id=image_id,
                                                     category_id=cat_id, bbox=box,
                                                     iscrowd=crowd, extra=extra))
            # The pending boxes are not needed again: freed image by image, so the source is
            # not held twice at the end of a conversion (a crowded source has millions).
            p.boxes = []
        return ds

    @property
    def num_images(self) -> int:
        """Images registered so far."""
        return len(self._images)
