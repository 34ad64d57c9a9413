"""Train/val/test assignment: the official split where a source has one, else a stable hash.

The split is a property of the *original* image, decided before it is cut, so every tile of one
original image lands in the same split (no leakage between train and test through overlapping
tiles). Without an official split, the image's identity ``"<source>/<original_file>"`` is hashed
(SHA-256) to a number in [0, 1) and compared with the cumulative ratios (default 70/10/20): the
assignment is stable across machines, runs and worker counts, and adding or removing other images
never moves an image to another split.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

from tinyset_builder.coco import SPLITS, CocoImage
from tinyset_builder.errors import TinysetError

#: Default shares for sources without an official split.
DEFAULT_RATIOS: dict[str, float] = {"train": 0.7, "val": 0.1, "test": 0.2}


def check_ratios(ratios: Mapping[str, float]) -> dict[str, float]:
    """Validate split ratios (keys among train/val/test, non-negative, summing to 1)."""
    bad = [k for k in ratios if k not in SPLITS]
    if bad:
        raise TinysetError(f"split ratios: unknown split(s) {bad}; use {SPLITS}")
    if any(v < 0 for v in ratios.values()) or abs(sum(ratios.values()) - 1.0) > 1e-9:
        raise TinysetError(f"split ratios must be >= 0 and sum to 1, got {dict(ratios)}")
    return {k: float(ratios[k]) for k in SPLITS if k in ratios}


def hash_unit(text: str) -> float:
    """A stable number in [0, 1) from ``text`` (first 64 bits of its SHA-256)."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64


def hash_split(source: str, original_file: str,
               ratios: Mapping[str, float] = DEFAULT_RATIOS) -> str:
    """The split of an image without an official one, from ``"<source>/<original_file>"``."""
    u = hash_unit(f"{source}/{original_file}")
    acc = 0.0
    last = "train"
    for split in SPLITS:
        share = ratios.get(split, 0.0)
        if share <= 0:
            continue
        acc += share
        last = split
        if u < acc:
            return split
    return last  # u within rounding of 1.0


def assign_split(image: CocoImage, ratios: Mapping[str, float] = DEFAULT_RATIOS) -> str:
    """The image's official split, or its hash split when the source has none."""
    if image.split is not None:
        if image.split not in SPLITS:
            raise TinysetError(f"{image.source}/{image.original_file}: split {image.split!r} "
                               f"not in {SPLITS}")
        return image.split
    return hash_split(image.source or "", image.original_file or image.file_name, ratios)


def find_leaks(images: Iterable[CocoImage]) -> dict[tuple[str, str], set[str]]:
    """Original images whose outputs landed in more than one split (should be empty).

    Returns:
        ``{(source, original_file): {splits}}`` for every leaking original image.
    """
    seen: dict[tuple[str, str], set[str]] = {}
    for img in images:
        seen.setdefault((img.source or "", img.original_file or ""), set()).add(img.split or "")
    return {k: v for k, v in seen.items() if len(v) > 1}
