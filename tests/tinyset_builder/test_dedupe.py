"""Exact duplicates by decoded-pixel hash, and the keep rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tinyset_builder.dedupe import find_duplicates, image_hash, pixel_hash
from tinyset_builder.imageio import read_image


def test_pixel_hash_sees_pixels_not_containers(tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(1)
    arr = rng.integers(0, 256, size=(40, 60, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "a.png")
    Image.fromarray(arr).save(tmp_path / "b.tiff")          # same picture, other container
    Image.fromarray(arr[:, :, 0]).save(tmp_path / "gray.png")  # gray -> repeated to RGB
    changed = arr.copy()
    changed[0, 0, 0] ^= 1
    Image.fromarray(changed).save(tmp_path / "c.png")        # one bit differs
    h = {p: pixel_hash(read_image(tmp_path / p)) for p in ("a.png", "b.tiff", "c.png",
                                                           "gray.png")}
    assert h["a.png"] == h["b.tiff"]
    assert h["a.png"] != h["c.png"]
    assert h["gray.png"] == pixel_hash(np.repeat(arr[:, :, :1], 3, axis=2))


def test_pixel_hash_includes_the_shape() -> None:
    a = np.zeros((4, 6, 3), np.uint8)
    assert pixel_hash(a) != pixel_hash(a.reshape(6, 4, 3))


def test_keep_rule_keeps_the_first_in_build_order() -> None:
    items = [("hrsid/a.jpg", "h1"), ("hrsid/b.jpg", "h2"), ("sardet_100k/x.jpg", "h1"),
             ("sardet_100k/y.jpg", "h3"), ("sardet_100k/z.jpg", "h2"), ("z/bad.jpg", None),
             ("z/bad2.jpg", None)]
    assert find_duplicates(items) == {"sardet_100k/x.jpg": "hrsid/a.jpg",
                                      "sardet_100k/z.jpg": "hrsid/b.jpg"}


def test_image_hash_streams_strips_to_the_same_digest() -> None:
    from PIL import Image

    arr = np.random.default_rng(2).integers(0, 256, size=(301, 177, 3), dtype=np.uint8)
    im = Image.fromarray(arr)
    assert image_hash(im) == pixel_hash(arr)
    assert image_hash(im, strip_bytes=1000) == pixel_hash(arr)   # many uneven strips
    assert image_hash(im, strip_bytes=1) == pixel_hash(arr)      # one row per strip
