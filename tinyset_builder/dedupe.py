"""Exact duplicates across sources, found by a hash of the decoded pixels.

Some sources contain each other's images (SARDet-100K contains HRSID; AI-TOD reuses imagery of
other sets; LIVECell lists some images twice). Files differ in name, folder and sometimes
container, so the hash is taken over the *decoded* pixels (after normalisation to 8-bit RGB)
together with the image's shape: two files are duplicates exactly when they decode to the same
picture. The hash is XXH3-128 (xxhash): about 10 GB/s, so hashing a decoded 16000×16000 scene
costs well under a tenth of decoding it (SHA-256 ran at 0.25 GB/s here, a third of the decode
time); 128 bits make an accidental collision among a few million images negligible.

**Keep rule.** Of a group of identical images, the one that comes first in the build order is
kept: sources in :data:`~tinyset_builder.sources.SOURCES` order (the paper's order), then
``original_file`` in sorted order within a source. So HRSID keeps its own images (it precedes
SARDet-100K and is the original labelling), and the rule depends on nothing but the inputs.
The dropped copies' annotations are counted as ``dropped: duplicate_image`` in ``build.json``,
with the kept copy named.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from PIL import Image


def image_hash(image: Image.Image, *, strip_bytes: int = 16 << 20) -> str:
    """:func:`pixel_hash` of an RGB Pillow image, computed strip by strip.

    Equal to ``pixel_hash(np.asarray(image))`` without ever holding a full-size copy: the
    strips are hashed in row order, which is the byte order of the contiguous array.
    """
    import xxhash

    if image.mode != "RGB":
        raise ValueError(f"image_hash needs an RGB image, got mode {image.mode}")
    w, h = image.size
    digest = xxhash.xxh3_128()
    digest.update(f"{(h, w, 3)}|{np.dtype(np.uint8).str}|".encode())
    try:
        # What ``Image.tobytes`` does, minus joining the chunks: Pillow's raw encoder packs the
        # pixels (RGBX in memory -> RGB) 64 kB at a time (cache-sized: 5x faster than tobytes
        # here) and each chunk goes straight to the hash.
        from PIL import Image as PILImage

        encoder = PILImage._getencoder("RGB", "raw", "RGB")
        encoder.setimage(image.im, (0, 0, w, h))
        try:
            while True:
                _, status, data = encoder.encode(max(65536, 4 * w))
                digest.update(data)
                if status:
                    break
        finally:
            encoder.cleanup()
        if status < 0:
            raise ValueError(f"raw encoder error {status}")
        return digest.hexdigest()
    except (AttributeError, TypeError):  # a Pillow without these internals: copy strips
        digest = xxhash.xxh3_128()
        digest.update(f"{(h, w, 3)}|{np.dtype(np.uint8).str}|".encode())
        rows = max(1, strip_bytes // (3 * w))
        for y in range(0, h, rows):
            digest.update(image.crop((0, y, w, min(h, y + rows))).tobytes())
        return digest.hexdigest()


def pixel_hash(pixels: npt.NDArray[np.uint8]) -> str:
    """XXH3-128 of an ``(H, W, C)`` uint8 array's shape and bytes, as hex.

    Hashes the buffer in place (no copy of a possibly 768 MB array).
    """
    import xxhash

    a = np.ascontiguousarray(pixels)
    h = xxhash.xxh3_128()
    h.update(f"{a.shape}|{a.dtype.str}|".encode())
    h.update(memoryview(a).cast("B"))
    return h.hexdigest()


class FirstSeen:
    """Streaming form of the keep rule: feed images in build order, learn which are copies."""

    def __init__(self) -> None:
        self._first: dict[str, Hashable] = {}

    def check(self, key: Hashable, digest: str | None) -> Hashable | None:
        """The key of the earlier identical image when ``key`` is a duplicate, else None.

        A ``None`` digest (an image that could not be decoded) never matches anything.
        """
        if digest is None:
            return None
        kept = self._first.setdefault(digest, key)
        return None if kept == key else kept


def find_duplicates(items: Iterable[tuple[Hashable, str | None]]) -> dict[Hashable, Hashable]:
    """Map each duplicate's key to the key of the copy that is kept.

    Args:
        items: ``(key, pixel_hash)`` pairs **in build order** (keys unique).

    Returns:
        ``{dropped_key: kept_key}``; keys absent from it are kept.
    """
    index = FirstSeen()
    dropped: dict[Hashable, Hashable] = {}
    for key, digest in items:
        kept = index.check(key, digest)
        if kept is not None:
            dropped[key] = kept
    return dropped
