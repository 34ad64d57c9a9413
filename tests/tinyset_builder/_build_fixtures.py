"""Tiny in-test sources for the build tests: real image files plus a hand-made CocoDataset."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tinyset_builder.coco import CocoAnnotation, CocoCategory, CocoDataset, CocoImage
from tinyset_builder.sources import Conversion
from tinyset_builder.sources.base import SourceInfo

# name, bbox (x, y, w, h), iscrowd
Box = tuple[str, tuple[float, float, float, float], int]


def make_info(name: str, categories: Sequence[str] = ("car", "person"), *,
              domain: str = "uav", build: dict | None = None) -> SourceInfo:
    """A SourceInfo without a manifest file (tests only)."""
    return SourceInfo(name=name, title=name.upper(), domain=domain, homepage="", license="",
                      citation="", native_format="test", layout="", download="",
                      categories=tuple(categories), build=build or {})


def pixels(width: int, height: int, seed: int) -> np.ndarray:
    """Deterministic textured RGB pixels (the synthesizers' background: compressible, so fast)."""
    from tinyset_builder.synth.canvas import textured_background

    return textured_background(np.random.default_rng(seed), width, height)


def save(path: Path, arr: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        Image.fromarray(arr).save(path, "JPEG", quality=90)
    else:
        Image.fromarray(arr).save(path, "PNG", compress_level=1)


def make_source(raw: Path, name: str, images: Sequence[tuple[str, int, int, str | None,
                                                             Sequence[Box]]],
                *, seed: int = 0, write: bool = True, info: SourceInfo | None = None,
                arrays: dict[str, np.ndarray] | None = None) -> Conversion:
    """Write ``raw/<name>/<file>`` images and return the matching Conversion.

    Args:
        images: ``(file, width, height, split, boxes)`` per image.
        arrays: explicit pixels for some files (to make duplicates).
    """
    info = info or make_info(name)
    cat_id = {c: i for i, c in enumerate(info.categories, start=1)}
    ds = CocoDataset(categories=[CocoCategory(id=i, name=info.category_name(c),
                                              supercategory=name)
                                 for c, i in cat_id.items()])
    ann_id = 0
    for k, (file, w, h, split, boxes) in enumerate(images, start=1):
        arr = (arrays or {}).get(file)
        if arr is None:
            arr = pixels(w, h, seed * 1000 + k)
        if write:
            save(raw / name / file, arr)
        ds.images.append(CocoImage(id=k, file_name=file, width=w, height=h, source=name,
                                   domain=info.domain, split=split, original_file=file,
                                   window=(0, 0, w, h), scale=1.0))
        for cat, bbox, crowd in boxes:
            ann_id += 1
            extra = {"note": f"a{ann_id}", "name": 'Fußgänger "x"',
                     "segmentation": [[1, 2, 3, 4]]}
            ds.annotations.append(CocoAnnotation(id=ann_id, image_id=k, category_id=cat_id[cat],
                                                 bbox=bbox, iscrowd=crowd, extra=extra))
    ds.validate()
    return Conversion(info=info, dataset=ds, skipped={}, examples={}, counts={})


def tree_bytes(root: Path, *, stats: bool = True) -> dict[str, bytes]:
    """Every file under ``root`` except the resumable work folder (and ``stats/`` unless
    ``stats``), by relative path."""
    skip = {".work"} if stats else {".work", "stats"}
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not skip & set(p.relative_to(root).parts)}
