"""What the COCO-JSON-family sources share: resolving image paths, feeding a parsed COCO file to
the assembler, and writing a synthetic COCO file with drawn images.

Seven sources ship COCO JSON (AI-TOD-v2, HRSID, SARDet-100K, RGBT-Tiny, COCO, SODA-D, LIVECell);
they differ only in folder layout, category quirks and ignore flags, which each source module
passes in here, so each stays a short list of its quirks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tinyset_builder.errors import SourceError
from tinyset_builder.formats.coco_json import (
    CocoJsonAnnotation,
    CocoJsonFile,
    CocoJsonImage,
    coco_json_document,
    write_coco_json,
)
from tinyset_builder.paths import safe_join
from tinyset_builder.sources.base import SourceAssembler, SynthSummary
from tinyset_builder.synth.canvas import Box, save_image, scene

#: ``(category name in the manifest, ignore?)`` for one annotation.
CategoryRule = Callable[[CocoJsonAnnotation], tuple[str, bool]]


def default_category(ann: CocoJsonAnnotation) -> tuple[str, bool]:
    """The file's own category name; ``iscrowd``/``ignore`` flags make it an ignore region."""
    return ann.category, ann.ignore


def first_existing(root: Path, candidates: Sequence[str]) -> str:
    """The first relative path in ``candidates`` that is a file under ``root``, else the first.

    Returning the first candidate when none exists lets the assembler report the missing image
    with the path the source's documented layout expects.
    """
    for rel in candidates:
        if (root / rel).is_file():
            return rel
    return candidates[0]


def first_dir(root: Path, candidates: Sequence[str]) -> str:
    """The first relative folder in ``candidates`` that exists under ``root`` (``""`` = root).

    Sources unpack either into the root or into one named top folder (``HRSID_JPG/``); both work.
    """
    for rel in candidates:
        if (root / rel).is_dir():
            return rel
    return candidates[-1]


def join(*parts: str) -> str:
    """POSIX-join relative path parts, skipping empty ones."""
    return "/".join(p.strip("/") for p in parts if p)


def in_folder(*parts: str) -> Callable[[CocoJsonImage], str]:
    """A ``locate`` function: the image's ``file_name`` under the folder ``parts``."""
    folder = join(*parts)
    return lambda im: join(folder, im.file_name)


def add_coco_file(asm: SourceAssembler, doc: CocoJsonFile, *,
                  split: str | Callable[[CocoJsonImage], str | None] | None,
                  locate: Callable[[CocoJsonImage], str],
                  category: CategoryRule = default_category,
                  extra_keys: Sequence[str] = (),
                  skip_image: Callable[[CocoJsonImage], bool] | None = None) -> None:
    """Add every image of ``doc`` and its boxes to ``asm``.

    Args:
        asm: the source's assembler.
        doc: a parsed COCO file.
        split: the official split of every image in this file, or a function giving it per
            image (AI-TOD's trainval file, split by the official tile lists).
        locate: image record → path relative to the source root.
        category: annotation → (manifest category name, is it an ignore region).
        extra_keys: annotation keys to carry over (e.g. RGBT-Tiny's ``tracking_id``).
        skip_image: images the caller leaves out by design (it counts their annotations).

    An image already registered (a second entry for the same file) is a bad record. Annotations
    of an image that could not be added (missing, unreadable or repeated, skipped under
    ``on_error="skip"``) are counted as ``dropped_with_bad_image``, so none vanish unexplained.
    """
    by_image = doc.annotations_by_image()
    for im in doc.images:
        try:
            # The name itself must be a plain relative path: an absolute or climbing name would
            # otherwise be re-rooted by a locator and reported as merely "not found".
            safe_join(asm.root, im.file_name)
        except SourceError as e:
            asm.policy.fail(im.location, str(e))
            asm.counts["dropped_with_bad_image"] += len(by_image.get(im.id, []))
            continue
        if skip_image is not None and skip_image(im):
            continue
        before = asm.num_images
        image_split = split(im) if callable(split) else split
        key = asm.add_image(locate(im), split=image_split, location=im.location)
        anns = by_image.get(im.id, [])
        if key is not None and asm.num_images == before:
            # The same file under a second entry would merge two label sets on one image.
            asm.policy.fail(im.location, f"image {key!r} is already listed by an earlier "
                                         f"entry or annotation file")
            key = None
        if key is None:
            asm.counts["dropped_with_bad_image"] += len(anns)
            continue
        count_size_mismatch(asm, key, im.width, im.height)
        for ann in anns:
            name, ignore = category(ann)
            extra = {k: ann.extra[k] for k in extra_keys if k in ann.extra}
            asm.add_box(key, ann.xywh, name, iscrowd=ignore, location=ann.location, extra=extra)


def count_size_mismatch(asm: SourceAssembler, key: str, width: int | None,
                        height: int | None) -> None:
    """Count an image whose header size differs from the size its annotation file states.

    The header is what the pixels are, so it wins; the count in ``build.json`` flags images
    whose boxes may have been drawn on a differently sized (e.g. re-encoded) copy.
    """
    if width is not None and height is not None and (width, height) != asm.image_size(key):
        asm.counts["image_size_differs_from_annotation"] += 1


@dataclass
class SynthTally:
    """Running counts of what a synthesizer wrote, turned into a :class:`SynthSummary`."""

    images: int = 0
    annotations: int = 0
    ignore: int = 0
    splits: dict[str, int] = field(default_factory=dict)

    def image(self, split: str | None) -> None:
        """Count one image the converter must emit."""
        self.images += 1
        if split is not None:
            self.splits[split] = self.splits.get(split, 0) + 1

    def box(self, *, ignore: bool = False, n: int = 1) -> None:
        """Count ``n`` annotations the converter must emit."""
        self.annotations += n
        self.ignore += n if ignore else 0

    def summary(self) -> SynthSummary:
        """The final :class:`SynthSummary`."""
        return SynthSummary(images=self.images, annotations=self.annotations, ignore=self.ignore,
                            splits=dict(sorted(self.splits.items())))


class CocoSynth:
    """Builds one synthetic COCO JSON file while drawing its images.

    Args:
        categories: ``(native id, name)`` pairs written to ``categories``.
        tally: shared counts (one per source); pass ``None`` for a file whose content the
            converter does not emit one-to-one (the caller then counts by hand).
    """

    def __init__(self, categories: Sequence[tuple[int, str]], tally: SynthTally | None) -> None:
        self.categories = list(categories)
        self.tally = tally
        self.images: list[dict[str, Any]] = []
        self.annotations: list[dict[str, Any]] = []
        self._next_ann = 1

    def draw(self, rng: np.random.Generator, path: Path, *, file_name: str, width: int,
             height: int, n_objects: int, split: str | None, image_id: int | None = None,
             gray: bool = False, min_size: int = 3, max_size: int = 20,
             image_extra: dict[str, Any] | None = None,
             ann_extra: Callable[[int], dict[str, Any]] | None = None) -> int:
        """Draw and save one image with tiny objects and record it; returns its image id.

        Object ``k`` of the scene gets category ``categories[label]`` and ``ann_extra(k)`` keys.
        """
        pixels, boxes, labels = scene(rng, width, height, n_objects, len(self.categories),
                                      min_size=min_size, max_size=max_size)
        save_image(path, pixels[:, :, 0] if gray else pixels)
        image_id = len(self.images) + 1 if image_id is None else image_id
        self.images.append({"id": image_id, "file_name": file_name, "width": width,
                            "height": height, **(image_extra or {})})
        if self.tally is not None:
            self.tally.image(split)
        for k, (box, label) in enumerate(zip(boxes, labels, strict=True)):
            self.box(image_id, box, self.categories[label][0], **(ann_extra(k) if ann_extra
                                                                   else {}))
        return image_id

    def box(self, image_id: int, box: Box | tuple[float, float, float, float], category_id: int,
            *, iscrowd: int = 0, count: bool = True, **extra: Any) -> None:
        """Add one annotation; counted in the tally (as ignore when ``iscrowd``) if ``count``."""
        self.annotations.append({"id": self._next_ann, "image_id": image_id,
                                 "category_id": category_id, "bbox": list(box),
                                 "iscrowd": iscrowd, **extra})
        self._next_ann += 1
        if self.tally is not None and count:
            self.tally.box(ignore=bool(iscrowd) or bool(extra.get("ignore")))

    def write(self, path: Path, *, annotations_as_dict: bool = False) -> Path:
        """Write the native COCO JSON file."""
        return write_coco_json(path, coco_json_document(
            self.images, self.annotations, self.categories,
            annotations_as_dict=annotations_as_dict))
