"""VisDrone2019-DET (UAV): per-image comma-separated TXT with ignored regions.

Layout under ``RAW/visdrone/`` (as the official zips unpack)::

    VisDrone2019-DET-train/{images/*.jpg, annotations/*.txt}
    VisDrone2019-DET-val/{images, annotations}
    VisDrone2019-DET-test-dev/{images, annotations}

Quirks:
- category 0 is an *ignored region*: kept as ``visdrone/ignored-region`` with ``iscrowd=1``;
- ``score == 0`` marks a box the official evaluation ignores: kept in its category, ``iscrowd=1``;
- category 11 "others" (unclassifiable vehicles) is also excluded by the official evaluation:
  kept as ``visdrone/others`` with ``iscrowd=1`` rather than dropped, so nothing is lost;
- boxes touching the border (truncation 1) may end exactly at the image edge; the assembler clips
  any that go past it and counts them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tinyset_builder.coco import CocoDataset
from tinyset_builder.errors import ErrorPolicy, where
from tinyset_builder.formats.visdrone_txt import format_visdrone_row, read_visdrone_txt
from tinyset_builder.sources.base import SourceAssembler, SourceInfo, SynthSummary
from tinyset_builder.synth.canvas import save_image, scene

SPLIT_DIRS = {"VisDrone2019-DET-train": "train", "VisDrone2019-DET-val": "val",
              "VisDrone2019-DET-test-dev": "test"}


def convert(root: Path, info: SourceInfo, policy: ErrorPolicy) -> CocoDataset:
    """Read every split folder present under ``root``."""
    asm = SourceAssembler(info, root, policy)
    for split_dir, split in SPLIT_DIRS.items():
        for ann_path in sorted((root / split_dir / "annotations").glob("*.txt")):
            rel = f"{split_dir}/images/{ann_path.stem}.jpg"
            image = asm.add_image(rel, split=split, location=str(ann_path))
            if image is None:
                continue
            for row in read_visdrone_txt(ann_path, policy):
                if not 0 <= row.category < len(info.categories):
                    policy.fail(where(ann_path, row.line), f"unknown category {row.category}")
                    continue
                ignore = row.category in (0, 11) or row.score == 0
                asm.add_box(image, row.xywh, info.categories[row.category], iscrowd=ignore,
                            location=where(ann_path, row.line),
                            extra={"truncation": row.truncation, "occlusion": row.occlusion})
    return asm.finish()


def synthesize(root: Path, seed: int) -> SynthSummary:
    """Five drone frames (1360x765 and 1920x1080) with ~80 tiny objects and an ignored region."""
    rng = np.random.default_rng(seed)
    plan = [("VisDrone2019-DET-train", 3), ("VisDrone2019-DET-val", 1),
            ("VisDrone2019-DET-test-dev", 1)]
    images = annotations = ignore = 0
    splits: dict[str, int] = {}
    for split_dir, count in plan:
        for k in range(count):
            w, h = (1920, 1080) if k % 2 == 0 else (1360, 765)
            pixels, boxes, labels = scene(rng, w, h, 80, 10, min_size=4, max_size=28)
            stem = f"{9999000 + images:07d}_{k:05d}_d_{seed:07d}"
            save_image(root / split_dir / "images" / f"{stem}.jpg", pixels)
            lines = [format_visdrone_row(b, 1, label + 1, 0, int(rng.integers(0, 3)))
                     for b, label in zip(boxes, labels, strict=True)]
            # One ignored region (category 0, score 0), one score-0 box, one "others".
            lines.append(format_visdrone_row((0, 0, 120, 60), 0, 0))
            lines.append(format_visdrone_row((200, 300, 12, 9), 0, 4))
            lines.append(format_visdrone_row((w - 10, h - 20, 10, 20), 1, 11, 1, 0))
            ann = root / split_dir / "annotations" / f"{stem}.txt"
            ann.parent.mkdir(parents=True, exist_ok=True)
            ann.write_text("\n".join(lines) + "\n")
            images += 1
            annotations += len(lines)
            ignore += 3
            splits[SPLIT_DIRS[split_dir]] = splits.get(SPLIT_DIRS[split_dir], 0) + 1
    return SynthSummary(images=images, annotations=annotations, ignore=ignore, splits=splits)
