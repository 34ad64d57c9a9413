"""TYC, the Trapped Yeast Cell dataset (microscopy): instance-id masks plus a class JSON.

Provenance: Reich et al., "An Instance Segmentation Dataset of Yeast Cells in Microstructures",
ICCV Workshops 2023; github ``ChristophReich1996/TYC-Dataset``; data on TUdatalib
(``labeled_set.zip``), CC BY 4.0. Layout under ``RAW/tyc/`` (as ``labeled_set.zip`` unpacks)::

    labeled_set/{train,val,test,test_ood}/images/*.tif          raw 16-bit TIFF, >= 2048x2048
    labeled_set/{train,val,test,test_ood}/labels/masks/*        instance ids, R + 256*G
    labeled_set/{train,val,test,test_ood}/labels/classes/*.json  {"annotations": [...]}

The unlabelled clips (``unlabeled_set_*``) have no labels and are not read.

Boxes: every non-zero instance id is one box (the extent of its pixels, see
:mod:`tinyset_builder.formats.masks`); its class comes from the JSON.

Quirks (all following the official ``TYCDataset`` loader):
- the three folders are paired by *sorted position*, not by name, so their file counts must agree;
- the *i*-th JSON entry is the class of the *i*-th instance in ascending id order (the JSON ``id``
  is not used to look up mask values; whether it equals them is unconfirmed), so the number of
  entries must equal the number of ids present;
- ``category_id`` 0 is a *trap* (a static microstructure), 1 a *cell*. Both are kept as
  categories: traps are real, labelled small objects, and dropping them would make the detector
  learn to fire on the structure next to every cell;
- ``test_ood`` (out-of-distribution test images) joins ``test``;
- images are 16-bit: the build normalises them to 8-bit (``imageio.to_rgb8``).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from tinyset_builder.coco import CocoDataset
from tinyset_builder.errors import ErrorPolicy, SourceError, TinysetError, where
from tinyset_builder.formats.masks import (
    MaskBox,
    decode_instance_ids,
    encode_instance_ids,
    instance_boxes,
    paint_instance_ids,
    read_label_image,
    save_label_image,
)
from tinyset_builder.io import read_json, write_json
from tinyset_builder.paths import relative_posix
from tinyset_builder.sources._voc_masks import header_size, layout_hint
from tinyset_builder.sources.base import SourceAssembler, SourceInfo, SynthSummary
from tinyset_builder.synth.canvas import sample_boxes, save_image

SPLIT_DIRS = {"train": "train", "val": "val", "test": "test", "test_ood": "test"}
#: Native ``category_id`` → manifest category.
CATEGORIES = ("trap", "cell")


def base_dir(root: Path) -> Path:
    """``root/labeled_set`` as the archive unpacks, or ``root`` itself when flattened."""
    return root / "labeled_set" if (root / "labeled_set").is_dir() else root


def _files(folder: Path) -> list[Path]:
    """Sorted non-hidden files, exactly the listing the official loader pairs by position."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def convert(root: Path, info: SourceInfo, policy: ErrorPolicy) -> CocoDataset:
    """Read every split folder present."""
    asm = SourceAssembler(info, root, policy)
    base = base_dir(root)
    present = [d for d in SPLIT_DIRS if (base / d).is_dir()]
    if not present:
        policy.fatal(str(base), f"no split folder ({', '.join(SPLIT_DIRS)}); "
                                f"{layout_hint(info)}")
    for split_dir in present:
        d = base / split_dir
        images, masks = _files(d / "images"), _files(d / "labels" / "masks")
        classes = _files(d / "labels" / "classes")
        if not len(images) == len(masks) == len(classes):
            policy.fatal(str(d), f"{len(images)} images, {len(masks)} masks and {len(classes)} "
                                 f"class files; they are paired by sorted position, so the "
                                 f"counts must agree")
        for image, mask, cls in zip(images, masks, classes, strict=True):
            _add_image(asm, root, image, mask, cls, SPLIT_DIRS[split_dir])
    return asm.finish()


def _add_image(asm: SourceAssembler, root: Path, image: Path, mask_path: Path, cls_path: Path,
               split: str) -> None:
    policy = asm.policy
    rel = relative_posix(image, root)
    size = header_size(asm, rel, location=str(image))
    if size is None:
        return
    try:
        mask = read_label_image(mask_path)
    except SourceError as e:
        policy.fail(str(mask_path), str(e).removeprefix(f"{mask_path}: "))
        return
    if (mask.shape[1], mask.shape[0]) != size:
        policy.fail(str(mask_path), f"mask is {mask.shape[1]}x{mask.shape[0]} but {image.name} "
                                    f"is {size[0]}x{size[1]}")
        return
    boxes = instance_boxes(decode_instance_ids(mask))
    categories = _read_classes(cls_path, boxes, policy)
    if categories is None:
        return
    key = asm.add_image(rel, split=split, width=size[0], height=size[1], location=str(image))
    if key is None:
        return
    for i, (box, category) in enumerate(zip(boxes, categories, strict=True)):
        if category is None:  # already counted by _read_classes
            continue
        asm.add_box(key, box.xywh, category, location=where(cls_path, f"annotations[{i}]"),
                    extra={"instance_id": box.instance_id, "mask_area": box.area})


def _read_classes(path: Path, boxes: list[MaskBox], policy: ErrorPolicy,
                  ) -> list[str | None] | None:
    """The category of each instance (ascending id; None for a reported bad entry), or None
    after reporting a bad file."""
    try:
        data = read_json(path)
    except TinysetError as e:  # "<path>[:<line>]: <reason>"; keep the line, drop the repeat
        m = re.match(rf"{re.escape(str(path))}(?::(\d+))?: (.*)", str(e))
        policy.fail(where(path, m[1]) if m else str(path), m[2] if m else str(e))
        return None
    entries = data.get("annotations") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        policy.fail(str(path), 'expected {"annotations": [...]}')
        return None
    if len(entries) != len(boxes):
        policy.fail(str(path), f"{len(entries)} class entries but {len(boxes)} instance ids in "
                               f"the mask (entry i is the class of the i-th id)")
        return None
    out: list[str | None] = []
    for i, entry in enumerate(entries):
        c = entry.get("category_id") if isinstance(entry, dict) else None
        if not isinstance(c, int) or isinstance(c, bool) or not 0 <= c < len(CATEGORIES):
            policy.fail(where(path, f"annotations[{i}]"),
                        f"category_id must be 0 (trap) or 1 (cell), got {c!r}")
            out.append(None)  # one bad entry costs its own instance, not the image's others
            continue
        out.append(CATEGORIES[c])
    return out


def synthesize(root: Path, seed: int) -> SynthSummary:
    """Four 2048x2048 16-bit TIFFs (one per split folder) with traps and cells.

    Instance ids are sparse and cross 256 (so the green channel carries part of them), while the
    JSON ``id`` counts 1, 2, ...: only the official position rule pairs them correctly.
    """
    rng = np.random.default_rng(seed)
    base = root / "labeled_set"
    size = 2048
    annotations = 0
    splits: dict[str, int] = {}
    for k, split_dir in enumerate(SPLIT_DIRS):
        pixels = _gray16_background(rng, size)
        boxes = sample_boxes(rng, size, size, 36, min_size=8, max_size=40, margin=2)
        cats = [0 if i < 10 else 1 for i in range(len(boxes))]  # traps, then cells
        ids = sorted(int(v) for v in rng.choice(np.arange(200, 900), len(boxes), replace=False))
        order = rng.permutation(len(boxes))  # ids are not in drawing order
        box_ids = [ids[j] for j in order]
        id_map = paint_instance_ids(size, size, boxes, box_ids, [c == 1 for c in cats])
        # Traps darker, cells brighter than the medium: a lookup by id paints both at once.
        shade = np.zeros(max(ids) + 1, dtype=np.uint16)
        shade[box_ids] = [3200 if c == 0 else 6800 for c in cats]
        inside = id_map > 0
        pixels[inside] = shade[id_map[inside]]
        stem = f"img_{k:04d}"
        save_image(base / split_dir / "images" / f"{stem}.tif", pixels)
        save_label_image(base / split_dir / "labels" / "masks" / f"{stem}.png",
                         encode_instance_ids(id_map))
        cat_of = dict(zip(box_ids, cats, strict=True))
        write_json(base / split_dir / "labels" / "classes" / f"{stem}.json",
                   {"annotations": [{"id": r, "category_id": cat_of[i]}
                                    for r, i in enumerate(ids, start=1)]})
        annotations += len(boxes)
        split = SPLIT_DIRS[split_dir]
        splits[split] = splits.get(split, 0) + 1
    return SynthSummary(images=len(SPLIT_DIRS), annotations=annotations, splits=splits)


def _gray16_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth 16-bit brightfield-like texture around the dataset's mean (~4818)."""
    from PIL import Image

    coarse = rng.integers(0, 256, size=(size // 64 + 2, size // 64 + 2), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((size, size), Image.Resampling.BILINEAR))
    return (4100 + smooth.astype(np.uint16) * 6).astype(np.uint16)
