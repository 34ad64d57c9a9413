"""IRSTD-1K (satellite/IR small targets): binary mask PNGs, boxes from connected components.

Provenance: github ``RuiZhang97/ISNet`` (Zhang et al., "ISNet: Shape Matters for Infrared Small
Target Detection", CVPR 2022); Google Drive / Baidu; MIT licence per the README. Layout under
``RAW/irstd_1k/`` (as the archive unpacks)::

    IRSTD-1k/IRSTD1k_Img/XDU<n>.png       512x512 infrared images (some loaders: images/)
    IRSTD-1k/IRSTD1k_Label/XDU<n>.png     binary masks, same names    (some loaders: masks/)
    IRSTD-1k/trainval.txt, IRSTD-1k/test.txt     ids without extension, unsorted

Coordinates: every 8-connected mask component (threshold > 0) is one ``ir_target`` box, the
tight extent of its pixels; single-pixel specks are counted as ``dropped_mask_speck`` (rule in
:mod:`tinyset_builder.formats.masks`).

Quirks:
- there are no boxes and no classes in the source: the category ``ir_target`` is ours;
- ``trainval.txt`` is the official training split (there is no separate val list): ``train``;
  an image in neither list is left for the build to assign;
- a listed id without an image, an image without a mask, or a mask of another size than its
  image is a bad record naming the file (and the list line);
- targets that touch merge into one component; the mask cannot separate them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tinyset_builder.coco import CocoDataset
from tinyset_builder.errors import ErrorPolicy
from tinyset_builder.formats.masks import paint_binary_mask, place_speck
from tinyset_builder.paths import relative_posix
from tinyset_builder.sources._voc_masks import add_mask_image, layout_hint, read_split_lists
from tinyset_builder.sources.base import SourceAssembler, SourceInfo, SynthSummary
from tinyset_builder.synth.canvas import sample_boxes, save_image, textured_background

IMAGE_DIRS = ("IRSTD1k_Img", "images")
MASK_DIRS = ("IRSTD1k_Label", "masks")
SPLIT_LISTS = {"train": "trainval.txt", "test": "test.txt"}
CATEGORY = "ir_target"


def base_dir(root: Path) -> Path:
    """``root/IRSTD-1k`` as the archive unpacks, or ``root`` itself when flattened."""
    return root / "IRSTD-1k" if (root / "IRSTD-1k").is_dir() else root


def _first_dir(base: Path, names: tuple[str, ...]) -> Path:
    return next((base / n for n in names if (base / n).is_dir()), base / names[0])


def convert(root: Path, info: SourceInfo, policy: ErrorPolicy) -> CocoDataset:
    """Every image with its mask's components; the split lists give the split."""
    asm = SourceAssembler(info, root, policy)
    base = base_dir(root)
    image_dir, mask_dir = _first_dir(base, IMAGE_DIRS), _first_dir(base, MASK_DIRS)
    if not image_dir.is_dir():
        policy.fatal(str(image_dir), f"image folder not found; {layout_hint(info)}")
    lists = read_split_lists({s: base / f for s, f in SPLIT_LISTS.items()}, policy)
    images = sorted(image_dir.glob("*.png"))
    for image in images:
        split = lists[image.stem][0] if image.stem in lists else None
        mask = mask_dir / image.name
        if not mask.is_file():
            policy.fail(str(mask), f"mask of {image.name} not found")
            continue
        add_mask_image(asm, relative_posix(image, root), [mask], CATEGORY, split=split,
                       location=str(image))
    present = {p.stem for p in images}
    for image_id, (_, location) in sorted(lists.items()):
        if image_id not in present:
            policy.fail(location, f"{image_id!r} is listed but {image_dir.name}/{image_id}.png "
                                  f"does not exist")
    return asm.finish()


def synthesize(root: Path, seed: int) -> SynthSummary:
    """Four 512x512 grayscale IR frames (3 trainval, 1 test) with 2-9 px targets and one speck."""
    rng = np.random.default_rng(seed)
    base = root / "IRSTD-1k"
    ids = ["XDU514", "XDU92", "XDU1000", "XDU0"]
    splits = {"XDU514": "train", "XDU92": "train", "XDU1000": "train", "XDU0": "test"}
    annotations = 0
    for k, image_id in enumerate(ids):
        pixels = textured_background(rng, 512, 512).mean(axis=2).astype(np.uint8)
        boxes = sample_boxes(rng, 512, 512, 12, min_size=2, max_size=9, margin=2)
        ellipses = [bool(i % 2) for i in range(len(boxes))]
        mask = paint_binary_mask(512, 512, boxes, ellipses)
        pixels[mask > 0] = 245  # hot targets on a cooler background
        if k == 0:  # a stray single-pixel speck, away from every target: dropped and counted
            place_speck(mask)
        save_image(base / "IRSTD1k_Img" / f"{image_id}.png", pixels)
        save_image(base / "IRSTD1k_Label" / f"{image_id}.png", mask)
        annotations += len(boxes)
    for split, name in SPLIT_LISTS.items():
        listed = [i for i in ids if splits[i] == split]
        (base / name).write_text("".join(f"{i}\n" for i in listed))
    return SynthSummary(images=len(ids), annotations=annotations,
                        splits={"train": 3, "test": 1})

