"""SKU110K: densely packed retail shelves, one CSV of boxes per split.

Provenance: github ``eg4000/SKU110K_CVPR19``, archive ``SKU110K_fixed.tar.gz``. 11,743 images
(8,219 train / 588 val / 2,936 test), about 150 boxes per image, one class.

Layout under ``RAW/sku110k/`` (as the archive unpacks)::

    SKU110K_fixed/images/{train,val,test}_<n>.jpg      # flat: the split is the name's prefix
    SKU110K_fixed/annotations/annotations_{train,val,test}.csv

Coordinates: absolute pixel corners ``x1,y1,x2,y2`` (converted to ``[x, y, w, h]``).

Quirks:
- every row repeats the image's width and height; some images are reported to be corrupt or to
  carry an EXIF rotation the boxes do not follow, so each row's size is checked against the size
  decoded from the image header, and a disagreement is a bad record (naming both sizes);
- the split comes from the CSV file; an image whose name prefix says another split, or that is
  listed in two CSVs, is a bad record (it would leak between splits);
- boxes may overshoot the image edge by a few pixels: clipped and counted by the assembler.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tinyset_builder.boxes import xyxy_to_xywh
from tinyset_builder.coco import CocoDataset
from tinyset_builder.errors import ErrorPolicy, where
from tinyset_builder.formats.sku110k_csv import SkuRow, format_sku110k_row, read_sku110k_csv
from tinyset_builder.sources.base import SourceAssembler, SourceInfo, SynthSummary
from tinyset_builder.synth.canvas import save_image, scene

BASE = "SKU110K_fixed"
SPLITS = ("train", "val", "test")


def convert(root: Path, info: SourceInfo, policy: ErrorPolicy) -> CocoDataset:
    """Read the three split CSVs, checking each row against its image's header size."""
    asm = SourceAssembler(info, root, policy)
    ann_dir = root / BASE / "annotations"
    csvs = [(ann_dir / f"annotations_{s}.csv", s) for s in SPLITS]
    if not any(path.is_file() for path, _ in csvs):
        policy.fatal(str(ann_dir), f"no annotations_{{{','.join(SPLITS)}}}.csv found")
    seen: dict[str, str] = {}
    for path, split in csvs:
        if not path.is_file():
            continue
        by_image: dict[str, list[SkuRow]] = {}
        for row in read_sku110k_csv(path, policy):
            by_image.setdefault(row.image, []).append(row)
        for name, rows in by_image.items():
            at = where(path, rows[0].line)
            if name in seen:
                policy.fail(at, f"{name} is also listed in annotations_{seen[name]}.csv")
                continue
            seen[name] = split
            if not name.startswith(f"{split}_"):
                policy.fail(at, f"{name} is in the {split} CSV but its name says another split")
                continue
            key = asm.add_image(f"{BASE}/images/{name}", split=split, location=at)
            if key is None:
                continue
            width, height = asm.image_size(key)
            for row in rows:
                at = where(path, row.line)
                if (row.width, row.height) != (width, height):
                    policy.fail(at, f"row says {name} is {row.width}x{row.height} but its header "
                                    f"says {width}x{height} (corrupt or EXIF-rotated image?)")
                    continue
                asm.add_box(key, xyxy_to_xywh(row.xyxy), row.category, location=at)
    return asm.finish()


def synthesize(root: Path, seed: int) -> SynthSummary:
    """Three shelf photos (one per split, up to 1836x2448) with ~70 products each."""
    rng = np.random.default_rng(seed)
    annotations = 0
    for i, split in enumerate(SPLITS):
        name = f"{split}_{seed * 10 + i}.jpg"
        # Real sizes vary (the rows carry them); one full-size photo, two smaller ones.
        width, height = [(1836, 2448), (1632, 1224), (1224, 1632)][i]
        pixels, boxes, _ = scene(rng, width, height, 70, 1, min_size=24, max_size=80)
        save_image(root / BASE / "images" / name, pixels)
        rows = [format_sku110k_row(name, (x, y, x + w, y + h), width, height)
                for x, y, w, h in boxes]
        # A product cut by the right edge whose box overshoots it, as in the release.
        rows.append(format_sku110k_row(name, (width - 30, 100, width + 6, 160), width, height))
        path = root / BASE / "annotations" / f"annotations_{split}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(rows) + "\n")
        annotations += len(rows)
    return SynthSummary(images=len(SPLITS), annotations=annotations,
                        splits=dict.fromkeys(SPLITS, 1))
