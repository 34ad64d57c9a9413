"""Reading image headers and pixels, with a limit against decompression bombs.

Converters need only an image's size, and read it from the header (Pillow opens lazily and
decodes nothing until asked). The build decodes pixels; every decoded image is normalised to
8-bit RGB (16-bit microscopy TIFFs are scaled by their own min/max, grayscale SAR/IR is repeated
to three channels) so every output tile has the same layout.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import numpy.typing as npt

from tinyset_builder.errors import SourceError

#: Largest image (in pixels) the toolkit will decode: 16000×16000 sources are legitimate
#: (LS-SSDD scenes), a 50k×50k "image" in a 100 kB file is an attack.
MAX_PIXELS = 400_000_000


def image_size(path: Path, *, max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """Return ``(width, height)`` from the image header without decoding pixels.

    Raises:
        SourceError: the file is missing, not an image, or larger than ``max_pixels``.
    """
    from PIL import Image, UnidentifiedImageError

    # Pillow refuses headers above 2x its own bomb limit (~179 Mpx) before we can apply ours.
    Image.MAX_IMAGE_PIXELS = max(Image.MAX_IMAGE_PIXELS or 0, max_pixels)
    try:
        with Image.open(path) as im:
            w, h = im.size
    except FileNotFoundError:
        raise SourceError(f"{path}: image file not found") from None
    except Image.DecompressionBombError:
        # Pillow refuses, at open, headers above twice its limit (which we raised to ours).
        raise SourceError(f"{path}: image exceeds the pixel limit {max_pixels} (its header "
                          f"declares more than twice that)") from None
    except (UnidentifiedImageError, OSError) as e:
        raise SourceError(f"{path}: unreadable image ({e.__class__.__name__})") from None
    if w * h > max_pixels:
        raise SourceError(f"{path}: image of {w}x{h} px exceeds the pixel limit {max_pixels}")
    return w, h


def read_image(path: Path, *, max_pixels: int = MAX_PIXELS) -> npt.NDArray[np.uint8]:
    """Decode an image to an ``(H, W, 3)`` uint8 array (see the module docstring).

    Raises:
        SourceError: missing, corrupt or truncated file, or one over the pixel limit.
    """
    return to_rgb8(read_array(path, max_pixels=max_pixels))


def read_array(path: Path, *, max_pixels: int = MAX_PIXELS) -> npt.NDArray[np.generic]:
    """Decode an image to its native array (dtype and channels as stored, no normalisation).

    Label images need their exact values: a mask's 0/255, an instance map's ids.

    Raises:
        SourceError: missing, corrupt or truncated file, or one over the pixel limit.
    """
    from PIL import Image, UnidentifiedImageError

    image_size(path, max_pixels=max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                Image.MAX_IMAGE_PIXELS = max(Image.MAX_IMAGE_PIXELS or 0, max_pixels)
                im.load()
                arr = np.asarray(im)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombWarning,
            Image.DecompressionBombError) as e:
        raise SourceError(f"{path}: cannot decode image ({e})") from None
    return arr


def to_rgb8(arr: npt.NDArray[np.generic]) -> npt.NDArray[np.uint8]:
    """Normalise a decoded array (gray, gray+alpha, RGBA, 16-bit, float) to ``(H, W, 3)`` uint8."""
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    if arr.dtype != np.uint8:
        a = arr.astype(np.float64)
        lo, hi = float(a.min()), float(a.max())
        a = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
        arr = np.round(a).astype(np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.shape[2] == 2:  # gray + alpha
        arr = arr[:, :, :1]
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    return np.ascontiguousarray(arr[:, :, :3])
