"""Drawing miniature scenes: textured backgrounds with many tiny objects of several categories.

Every synthetic source draws its images with these functions, so the objects are learnable (each
category has its own shape and colour, detectable against a textured, not flat, background) and
the pixels are a pure function of the seed. Boxes are integer ``[x, y, w, h]`` and an object fills
exactly its box's rectangle or the ellipse inscribed in it, so mask-derived boxes reproduce them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

Box = tuple[int, int, int, int]

#: One colour per category index (RGB), distinct from the background's mid-gray texture.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 40, 40), (40, 200, 60), (50, 90, 240), (240, 220, 40), (220, 60, 220),
    (40, 220, 220), (255, 140, 0), (140, 70, 20), (250, 250, 250), (10, 10, 10),
    (150, 0, 90), (0, 120, 120), (120, 120, 0), (255, 170, 200), (90, 40, 160),
    (160, 220, 120), (200, 120, 80),
)


def textured_background(rng: np.random.Generator, width: int, height: int,
                        ) -> npt.NDArray[np.uint8]:
    """A smooth random texture (low-frequency blobs plus fine grain), ``(H, W, 3)`` uint8."""
    from PIL import Image

    coarse = rng.integers(70, 150, size=(height // 48 + 2, width // 48 + 2, 3), dtype=np.uint8)
    # Bilinear upsampling of a coarse random grid gives soft blobs at a fraction of the cost
    # of filtering full-resolution noise.
    img = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BILINEAR))
    grain = rng.integers(-6, 7, size=(height, width, 1), dtype=np.int16)
    return np.clip(img.astype(np.int16) + grain, 0, 255).astype(np.uint8)


def sample_boxes(rng: np.random.Generator, width: int, height: int, n: int, *,
                 min_size: int = 4, max_size: int = 24, margin: int = 1,
                 max_tries: int = 50) -> list[Box]:
    """Up to ``n`` non-overlapping integer boxes inside the image, sides in [min_size, max_size]."""
    taken = np.zeros((height, width), dtype=bool)
    boxes: list[Box] = []
    for _ in range(n * max_tries):
        if len(boxes) == n:
            break
        w, h = (int(v) for v in rng.integers(min_size, max_size + 1, size=2))
        if w + 2 * margin >= width or h + 2 * margin >= height:
            continue
        x = int(rng.integers(margin, width - w - margin))
        y = int(rng.integers(margin, height - h - margin))
        if taken[max(y - margin, 0):y + h + margin, max(x - margin, 0):x + w + margin].any():
            continue
        taken[y:y + h, x:x + w] = True
        boxes.append((x, y, w, h))
    return boxes


def draw_objects(img: npt.NDArray[np.uint8], boxes: list[Box], labels: list[int]) -> None:
    """Draw each box's object in place: even labels as filled rectangles, odd as ellipses."""
    for (x, y, w, h), label in zip(boxes, labels, strict=True):
        color = np.array(PALETTE[label % len(PALETTE)], dtype=np.uint8)
        region = img[y:y + h, x:x + w]
        if label % 2 == 0:
            region[:] = color
        else:
            region[object_mask(w, h, ellipse=True)] = color


def object_mask(w: int, h: int, *, ellipse: bool) -> npt.NDArray[np.bool_]:
    """Boolean ``(h, w)`` footprint of an object; an ellipse still touches all four box edges."""
    if not ellipse or w < 3 or h < 3:
        return np.ones((h, w), dtype=bool)
    yy, xx = np.mgrid[0:h, 0:w]
    cy, cx = (h - 1) / 2, (w - 1) / 2
    m = ((yy - cy) / (h / 2)) ** 2 + ((xx - cx) / (w / 2)) ** 2 <= 1.0
    m[h // 2, :] = True  # keep the full width and height so the tight box equals the box
    m[:, w // 2] = True
    return m


def save_image(path: Path, pixels: npt.NDArray[np.generic], *, quality: int = 92) -> Path:
    """Save an array with Pillow, format from the suffix; deterministic for the same pixels."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(pixels)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        im.save(path, quality=quality)
    elif path.suffix.lower() in (".tif", ".tiff"):
        im.save(path, compression="raw")
    elif path.suffix.lower() == ".png":
        # Fast zlib level: textured noise barely compresses, and level 6 costs ~1 s per tile.
        im.save(path, compress_level=1)
    else:
        im.save(path)
    return path


def scene(rng: np.random.Generator, width: int, height: int, n_objects: int,
          n_categories: int, *, min_size: int = 4, max_size: int = 24,
          ) -> tuple[npt.NDArray[np.uint8], list[Box], list[int]]:
    """A textured image with up to ``n_objects`` tiny objects; returns pixels, boxes, labels."""
    img = textured_background(rng, width, height)
    boxes = sample_boxes(rng, width, height, n_objects, min_size=min_size, max_size=max_size)
    labels = [int(v) for v in rng.integers(0, n_categories, size=len(boxes))]
    draw_objects(img, boxes, labels)
    return img, boxes, labels
