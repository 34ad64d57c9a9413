"""The build's unit of work: one original image in, its 1024×1024 outputs and a result file out.

A :class:`TileTask` holds everything needed to process one original image (its path, boxes,
split, scale and the options), so tasks are independent and can run in any order, in any process,
on any machine that sees the same files. :func:`run_task` is a pure function of the task:

1. decode the image (8-bit RGB, pixel limit), hash the decoded pixels (for dedupe);
2. downscale when the source's manifest asks for it;
3. cut it into windows (:mod:`.tiling`), clip the boxes, make badly cut ones ignore regions;
4. drop windows failing the large-object filter (:mod:`.filters`) and, by default, empty ones;
5. encode and write the kept outputs (each file atomically), then write the task's result JSON
   atomically and fsync'd. The result file is the task's "done" marker: it is written last, so a
   task killed half-way has no result and is simply redone (rewriting the same bytes).

Resuming a build reuses a result file only when its ``fingerprint`` (hash of the task's inputs,
options and tool version) matches and every output it lists exists with the recorded size.

A corrupt, truncated, missing or over-limit image gives a result with ``status: "error"`` and a
reason instead of an exception, so the build goes on and counts it.

**Codecs.** JPEG inputs give JPEG outputs (quality 95, Pillow's default 4:2:0 chroma: the inputs
are already lossy and mostly 4:2:0, and 4:4:4 doubled the encode time in our measurement); every
other input (PNG, TIFF, BMP: SAR, infrared, microscopy) gives PNG, so lossless sources stay
lossless. PNG uses zlib level 1: encode time dominates the build and level 1 was about twice as
fast as Pillow's default 6 for files only a few per cent larger (figures in ``docs/build.md``).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from tinyset_builder import __version__
from tinyset_builder.errors import SourceError
from tinyset_builder.filters import LargeObjectFilter
from tinyset_builder.io import atomic_write_bytes, dumps_json, read_json, write_json
from tinyset_builder.tiling import (
    TileBoxes,
    TilingOptions,
    Window,
    boxes_in_windows,
    crop_or_pad,
)

if TYPE_CHECKING:
    from PIL import Image

JPEG_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".jfif"})

#: Outcome of one input annotation, best first; an annotation seen in several windows gets the
#: best outcome over all windows that are kept (see :func:`run_task`).
OUTCOMES = ("kept", "clipped", "ignore", "dropped_large_objects", "dropped_empty_image",
            "dropped_degenerate")


@dataclass(frozen=True, slots=True, kw_only=True)
class CodecOptions:
    """Output encoding: JPEG for JPEG inputs, PNG (lossless) for everything else."""

    jpeg_quality: int = 95
    png_compress_level: int = 1

    def to_dict(self) -> dict[str, int]:
        """The options as a plain dict (for ``build.json``)."""
        return asdict(self)


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class TileTask:
    """Everything needed to process one original image.

    The boxes are held as read-only numpy arrays: a crowded image has thousands, and arrays
    cost little to ship to a worker and nothing to use there. (Hence ``eq=False``: tasks
    compare by identity; their ``fingerprint`` says whether two describe the same work.)

    Attributes:
        key: ``"<source>/<original_file>"``, unique in a build.
        source, domain, original_file: provenance copied to every output.
        image_path: absolute path of the original image.
        width, height: the size the converter read from the header.
        split: the split every output of this image goes to.
        stem: output file names are ``<stem>__x<X>_y<Y>.<ext>``.
        ext: ``"jpg"`` or ``"png"``.
        boxes: ``(N, 4)`` ``[x0, y0, x1, y1]`` per annotation, original pixels, in the
            converter's order (anything array-like; stored as read-only float64).
        iscrowd: ``(N,)`` 0/1 per annotation (stored as read-only int64).
        scale: downscale factor applied before tiling (1 = none).
        tiling, large_filter, codec, max_pixels: the options.
        out: the build's output folder; result: this task's result file.
    """

    key: str
    source: str
    domain: str
    original_file: str
    image_path: str
    width: int
    height: int
    split: str
    stem: str
    ext: str
    boxes: npt.NDArray[np.float64]
    iscrowd: npt.NDArray[np.int64]
    scale: float
    tiling: TilingOptions
    large_filter: LargeObjectFilter
    codec: CodecOptions
    max_pixels: int
    out: str
    result: str
    fingerprint: str = field(default="")

    def __post_init__(self) -> None:
        for name, dtype, shape in (("boxes", np.float64, (-1, 4)), ("iscrowd", np.int64, (-1,))):
            a = np.array(getattr(self, name), dtype=dtype).reshape(shape)  # a private copy
            a.flags.writeable = False
            object.__setattr__(self, name, a)
        if len(self.boxes) != len(self.iscrowd):
            raise ValueError(f"{self.key}: {len(self.boxes)} boxes but {len(self.iscrowd)} "
                             f"iscrowd flags")
        if not self.fingerprint:
            object.__setattr__(self, "fingerprint", self._fingerprint())

    def _fingerprint(self) -> str:
        d: dict[str, Any] = {k: getattr(self, k) for k in (
            "key", "source", "domain", "original_file", "width", "height", "split", "stem",
            "ext", "scale", "max_pixels")}
        # The arrays by their bytes in a fixed byte order (JSON of thousands of floats was a
        # noticeable part of planning a crowded source).
        for name, dtype in (("boxes", "<f8"), ("iscrowd", "<i8")):
            d[name] = hashlib.sha256(getattr(self, name).astype(dtype).tobytes()).hexdigest()
        d["options"] = [self.tiling.to_dict(), self.large_filter.to_dict(), self.codec.to_dict()]
        d["tool"] = __version__
        return hashlib.sha256(dumps_json(d)).hexdigest()


def output_ext(original_file: str) -> str:
    """``"jpg"`` for JPEG inputs, else ``"png"`` (lossless stays lossless)."""
    return "jpg" if Path(original_file).suffix.lower() in JPEG_SUFFIXES else "png"


def encode(im: Image.Image, ext: str, codec: CodecOptions) -> bytes:
    """Encode an RGB tile with the build's codec settings."""
    buf = io.BytesIO()
    if ext == "jpg":
        im.save(buf, "JPEG", quality=codec.jpeg_quality)
    else:
        im.save(buf, "PNG", compress_level=codec.png_compress_level)
    return buf.getvalue()


def error_reason(message: str) -> str:
    """Classify a decode failure into a short counted reason."""
    if "not found" in message:
        return "missing_image"
    if "pixel limit" in message:
        return "over_pixel_limit"
    return "corrupt_image"


#: Pillow modes whose own conversion to RGB is the toolkit's normalisation (gray repeated to three
#: channels, alpha dropped, palette looked up). Other modes (16-bit, 32-bit, float) go through
#: :func:`tinyset_builder.imageio.to_rgb8`, which scales by the image's own min/max.
_PIL_TO_RGB = frozenset({"L", "LA", "RGBA", "RGBX", "P", "PA", "1", "CMYK", "YCbCr", "La"})


def load_image(task: TileTask) -> Image.Image:
    """Decode the task's image as an RGB Pillow image of the size the converter recorded.

    Memory: the decoded image is held once (Pillow stores RGB in 4 bytes per pixel, so a
    16000×16000 scene takes 1 GB); nothing makes a full-size numpy copy, which with
    ``np.asarray`` would cost two more (Pillow's ``tobytes`` joins chunks).

    Raises:
        SourceError: missing, corrupt or truncated file, one over the pixel limit, or a decoded
            size that differs from the header.
    """
    import warnings

    from PIL import Image, UnidentifiedImageError

    from tinyset_builder.imageio import image_size, to_rgb8

    path = Path(task.image_path)
    image_size(path, max_pixels=task.max_pixels)  # missing / unreadable / over the limit
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            Image.MAX_IMAGE_PIXELS = max(Image.MAX_IMAGE_PIXELS or 0, task.max_pixels)
            with Image.open(path) as im:
                im.load()
                if im.mode == "RGB":
                    rgb = im  # loaded: stays valid after the file is closed, no copy
                elif im.mode in _PIL_TO_RGB:
                    rgb = im.convert("RGB")
                else:
                    rgb = Image.fromarray(to_rgb8(np.asarray(im)))
    except (UnidentifiedImageError, OSError, Image.DecompressionBombWarning,
            Image.DecompressionBombError) as e:
        raise SourceError(f"{path}: cannot decode image ({e})") from None
    if rgb.size != (task.width, task.height):
        raise SourceError(f"{path}: decoded size {rgb.size[0]}x{rgb.size[1]} differs from the "
                          f"header's {task.width}x{task.height} (corrupt)")
    return rgb


def downscale(image: Image.Image, scale: float) -> Image.Image:
    """Resize by ``scale`` (Lanczos), output size rounded to whole pixels."""
    from PIL import Image

    w, h = image.size
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


def _window_in_original(window: tuple[int, int, int, int], scale: float, width: int,
                        height: int, scaled: tuple[int, int]) -> list[float | int]:
    """A window of the (possibly downscaled) image in original pixels."""
    if scale == 1.0:
        return list(window)
    x0, y0, x1, y1 = window
    sw, sh = scaled
    return [round(x0 / scale, 3), round(y0 / scale, 3),
            width if x1 == sw else round(x1 / scale, 3),
            height if y1 == sh else round(y1 / scale, 3)]


def task_boxes(task: TileTask) -> tuple[np.ndarray, np.ndarray]:
    """The task's boxes in the pixels of the (possibly downscaled) image, and their iscrowd."""
    boxes = task.boxes * task.scale if task.scale != 1.0 else task.boxes
    return boxes, task.iscrowd


def tile_boxes(task: TileTask, boxes: np.ndarray, iscrowd: np.ndarray,
               windows: Sequence[Window]) -> list[TileBoxes]:
    """The boxes of each window as written to the dataset (clipped, classified, rounded).

    The worker calls this to decide about its windows; the merge calls it again for the kept
    ones to write their annotations, so result files need not carry every box (same function,
    same floats, same records).
    """
    return boxes_in_windows(boxes, iscrowd, windows, task.tiling.min_visible,
                            decimals=None if task.scale == 1.0 else 3)


def process(task: TileTask) -> dict[str, Any]:
    """Run one task and return its result record (see the module docstring); writes outputs."""
    from tinyset_builder.dedupe import image_hash

    base: dict[str, Any] = {"fingerprint": task.fingerprint, "key": task.key,
                            "split": task.split, "annotations_in": len(task.boxes)}
    try:
        image = load_image(task)
    except SourceError as e:
        return {**base, "status": "error", "reason": error_reason(str(e)), "message": str(e)}
    digest = image_hash(image)
    boxes, iscrowd = task_boxes(task)
    if task.scale != 1.0:
        image = downscale(image, task.scale)  # the full-size image is freed here
    sw, sh = image.size
    opts = task.tiling
    # rank[i] = best outcome of annotation i over all windows (index into OUTCOMES); an
    # annotation in no window keeps the worst, "dropped_degenerate".
    rank = np.full(len(boxes), len(OUTCOMES) - 1, dtype=np.int64)
    outputs: list[dict[str, Any]] = []
    dropped_images = {"large_objects": 0, "empty": 0}
    grid = opts.windows(sw, sh, task.split)  # the split's grid (TilingOptions.windows)
    images = Path(task.out, "images", task.split)
    images.mkdir(parents=True, exist_ok=True)  # once here, not per tile (lean writes)
    # (annotation index, outcome rank) of every window, folded into ``rank`` once at the end.
    seen: list[tuple[np.ndarray, np.ndarray | int]] = []
    for window, tb in zip(grid, tile_boxes(task, boxes, iscrowd, grid), strict=True):
        objects = tb.xyxy[iscrowd[tb.index] == 0]  # a source's own ignore regions: no objects
        content = float((window[2] - window[0]) * (window[3] - window[1]))
        if task.large_filter.rejects(objects, content):
            seen.append((tb.index, OUTCOMES.index("dropped_large_objects")))
            dropped_images["large_objects"] += 1
            continue
        if not opts.keep_empty and not (tb.iscrowd == 0).any():
            seen.append((tb.index, OUTCOMES.index("dropped_empty_image")))
            dropped_images["empty"] += 1
            continue
        # kept = whole label or whole source ignore region; clipped = cut but still itself;
        # ignore = a label made ignore because too little of it is left.
        seen.append((tb.index, np.where(tb.made_ignore, 2, np.where(tb.whole, 0, 1))))
        name = f"{task.stem}__x{window[0]}_y{window[1]}.{task.ext}"
        data = encode(crop_or_pad(image, window, opts.tile, opts.pad_value), task.ext,
                      task.codec)
        # Lean atomic write, no fsync: the task's fsync'd result file, written last, vouches
        # for its outputs, and resuming checks each output's size against it.
        atomic_write_bytes(images / name, data, fsync=False, lean=True)
        outputs.append({"file_name": name, "bytes": len(data), "tile_window": list(window),
                        "window": _window_in_original(window, task.scale, task.width,
                                                      task.height, (sw, sh))})
    if seen:
        index = np.concatenate([i for i, _ in seen])
        outcome = np.concatenate([np.broadcast_to(o, i.shape) for i, o in seen])
        np.minimum.at(rank, index, outcome)
    counts = {name: int((rank == k).sum()) for k, name in enumerate(OUTCOMES)}
    return {**base, "status": "ok", "pixel_hash": digest, "outputs": outputs,
            "windows": len(grid), "dropped_images": dropped_images, "outcomes": counts}


def run_task(task: TileTask) -> tuple[str, str]:
    """Process ``task`` and commit its result file; returns ``(key, status)``.

    This is the function executors ship to workers; it returns only a small summary because the
    build reads the details back from the result file.
    """
    result = process(task)
    write_json(task.result, result)
    return task.key, str(result["status"])


def load_result(task: TileTask) -> dict[str, Any] | None:
    """The task's committed result, or None when it must be (re)done.

    A result is reused only if its fingerprint matches the task and each output it lists exists
    with the recorded size (an interrupted or different earlier build is never trusted).
    """
    path = Path(task.result)
    if not path.is_file():
        return None
    try:
        result = read_json(path)
    except Exception:  # a foreign or damaged file: redo the task
        return None
    if not isinstance(result, dict) or result.get("fingerprint") != task.fingerprint:
        return None
    images = Path(task.out) / "images" / task.split
    for o in result.get("outputs", []):
        try:
            if (images / o["file_name"]).stat().st_size != o["bytes"]:
                return None
        except OSError:
            return None
    return result
