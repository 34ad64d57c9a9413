"""JHU-CROWD++ (jhu_crowd_v2.0): dense crowds with an approximate box on every head.

Provenance: crowd-counting.com (``jhu_crowd_v2.0.zip``); Sindagi et al., TPAMI 2020. 4,372 images
(2,272 train / 500 val / 1,600 test), about 1.51M heads.

Layout under ``RAW/jhu_crowd/`` (as the zip unpacks)::

    jhu_crowd_v2.0/{train,val,test}/images/<name>.jpg
    jhu_crowd_v2.0/{train,val,test}/gt/<name>.txt          # x y w h o b per head
    jhu_crowd_v2.0/{train,val,test}/image_labels.txt       # name,count,scene,weather,distractor

Coordinates: ``x, y`` is read as the head centre, ``w, h`` its size (the reasons, and the switch,
are in :mod:`tinyset_builder.formats.jhu_txt`); heads near the edge then overshoot the image and
are clipped by the assembler (counted).

Quirks:
- distractor images (no crowd) have an *empty* gt file: a valid image with no objects;
- an image without a gt file is a bad record (every image has one, empty or not);
- ``image_labels.txt`` repeats each image's head count; when the gt file disagrees (a truncated
  file?) the boxes are kept and the image is counted as ``label_count_mismatch``;
- occlusion (1-3) and blur (0/1) are kept on each annotation; fully occluded heads stay ordinary
  annotations (they are still heads to find).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tinyset_builder.coco import CocoDataset
from tinyset_builder.errors import ErrorPolicy, where
from tinyset_builder.formats.jhu_txt import (
    format_image_label,
    format_jhu_head,
    read_image_labels,
    read_jhu_gt,
)
from tinyset_builder.sources.base import SourceAssembler, SourceInfo, SynthSummary
from tinyset_builder.synth.canvas import save_image, scene

BASE = "jhu_crowd_v2.0"
SPLITS = ("train", "val", "test")
CATEGORY = "head"


def convert(root: Path, info: SourceInfo, policy: ErrorPolicy) -> CocoDataset:
    """Read every split folder present under ``jhu_crowd_v2.0/``."""
    asm = SourceAssembler(info, root, policy)
    if not any((root / BASE / s).is_dir() for s in SPLITS):
        policy.fatal(str(root / BASE), f"no {'/'.join(SPLITS)} folder found")
    for split in SPLITS:
        split_dir = root / BASE / split
        labels_path = split_dir / "image_labels.txt"
        labels = read_image_labels(labels_path, policy) if labels_path.is_file() else {}
        for image in sorted((split_dir / "images").glob("*.jpg")):
            gt = split_dir / "gt" / f"{image.stem}.txt"
            if not gt.is_file():
                policy.fail(str(gt), "gt file not found (distractor images have an empty one)")
                continue
            key = asm.add_image(f"{BASE}/{split}/images/{image.name}", split=split,
                                location=str(gt))
            if key is None:
                continue
            heads = read_jhu_gt(gt, policy)
            label = labels.get(image.stem)
            if label is not None and label.count != len(heads):
                asm.counts["label_count_mismatch"] += 1
            for head in heads:
                asm.add_box(key, head.to_xywh(), CATEGORY, location=where(gt, head.line),
                            extra={"occlusion": head.occlusion, "blur": head.blur})
    return asm.finish()


def synthesize(root: Path, seed: int) -> SynthSummary:
    """Four crowd photos (one 2048x1365) with up to 120 tiny heads, and one empty distractor."""
    rng = np.random.default_rng(seed)
    plan = [("train", (2048, 1365), 120), ("train", (1024, 768), 0), ("val", (1280, 720), 80),
            ("test", (1024, 683), 80)]
    images = annotations = 0
    rows: dict[str, list[str]] = {s: [] for s in SPLITS}
    for i, (split, (width, height), n) in enumerate(plan):
        name = f"{seed * 10 + i + 1:04d}"
        pixels, boxes, _ = scene(rng, width, height, n, 1, min_size=4, max_size=20)
        save_image(root / BASE / split / "images" / f"{name}.jpg", pixels)
        lines = [format_jhu_head(b, int(rng.integers(1, 4)), int(rng.integers(0, 2)))
                 for b in boxes]
        if n:
            # A head on the left edge: centred at x=3 with w=10, its box overshoots and is clipped.
            lines.append(format_jhu_head((-2, height // 2, 10, 12), 2, 1))
        gt = root / BASE / split / "gt" / f"{name}.txt"
        gt.parent.mkdir(parents=True, exist_ok=True)
        gt.write_text("".join(f"{line}\n" for line in lines))
        rows[split].append(format_image_label(name, len(lines), "stadium" if n else "park",
                                              distractor=not n))
        images += 1
        annotations += len(lines)
    for split, split_rows in rows.items():
        (root / BASE / split / "image_labels.txt").write_text("\n".join(split_rows) + "\n")
    return SynthSummary(images=images, annotations=annotations,
                        splits={"train": 2, "val": 1, "test": 1})
