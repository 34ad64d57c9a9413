"""SCUT-HEAD (daily life, heads in classrooms and web images): Pascal VOC XML, Parts A and B.

Provenance: github ``HCIILAB/SCUT-HEAD-Dataset-Release`` (Baidu / Google Drive); Peng et al.,
"Detecting Heads using Feature Refine Net and Cascaded Multi-scale Architecture", ICPR 2018.
Layout under ``RAW/scut_head/`` (as the two archives unpack)::

    SCUT_HEAD_Part_A/{Annotations/*.xml, JPEGImages/*.jpg, ImageSets/Main/{train,val,test}.txt}
    SCUT_HEAD_Part_B/{Annotations, JPEGImages, ImageSets/Main}

Coordinates: LabelImg corners, ``w = xmax - xmin``.

Quirks:
- every box is a *head*. The genuine annotation files name the class ``head``; copies that went
  through other tools (the SHWD derivative, Dataset Ninja) call it ``person``. Both are read as
  the one category ``head``, so the boxes are never confused with whole-body "person" boxes of
  other sources;
- Part A and Part B each carry their own ``ImageSets/Main`` lists (``trainval`` is their union and
  is not read); when a copy has no lists (some mirrors), the split is left to the build;
- some boxes run past the image border (``xmax`` > width): the assembler clips and counts them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tinyset_builder.coco import CocoDataset
from tinyset_builder.errors import ErrorPolicy
from tinyset_builder.formats.voc_xml import VocObject, format_voc_xml
from tinyset_builder.sources._voc_masks import (
    add_voc_folder,
    layout_hint,
)
from tinyset_builder.sources.base import SourceAssembler, SourceInfo, SynthSummary
from tinyset_builder.synth.canvas import save_image, scene

PARTS = ("SCUT_HEAD_Part_A", "SCUT_HEAD_Part_B")
SPLITS = ("train", "val", "test")
#: Native class names → the manifest category (see the module docstring).
ALIASES = {"person": "head"}


def convert(root: Path, info: SourceInfo, policy: ErrorPolicy) -> CocoDataset:
    """Read both parts that are present; each part's own lists give the split."""
    asm = SourceAssembler(info, root, policy)
    parts = [p for p in PARTS if (root / p).is_dir()]
    if not parts:
        policy.fatal(str(root), f"neither {' nor '.join(PARTS)} found; "
                                f"{layout_hint(info)}")
    for part in parts:
        add_voc_folder(asm, root / part, f"{part}/", root / part / "ImageSets" / "Main",
                       policy, aliases=ALIASES)
    return asm.finish()


def synthesize(root: Path, seed: int) -> SynthSummary:
    """Part A: two 1070x594 classroom frames; Part B: 600x407 and 1024x768 web images.

    Part B names its class ``person`` (the alias), and every image has one head crossing the
    right border, which the converter clips.
    """
    rng = np.random.default_rng(seed)
    plan = [("SCUT_HEAD_Part_A", "PartA_00000", 1070, 594, "train", "head"),
            ("SCUT_HEAD_Part_A", "PartA_00001", 1070, 594, "val", "head"),
            ("SCUT_HEAD_Part_B", "PartB_00000", 600, 407, "test", "person"),
            ("SCUT_HEAD_Part_B", "PartB_00001", 1024, 768, "train", "person")]
    annotations = 0
    splits: dict[str, int] = {}
    lists: dict[tuple[str, str], list[str]] = {}
    for part, stem, w, h, split, name in plan:
        pixels, boxes, _ = scene(rng, w, h, 40, 1, min_size=6, max_size=30)
        save_image(root / part / "JPEGImages" / f"{stem}.jpg", pixels)
        objects = [VocObject(name, (x, y, x + bw, y + bh)) for x, y, bw, bh in boxes]
        objects.append(VocObject(name, (w - 12, h // 2, w + 6, h // 2 + 20), truncated=True))
        xml = root / part / "Annotations" / f"{stem}.xml"
        xml.parent.mkdir(parents=True, exist_ok=True)
        xml.write_text(format_voc_xml(f"{stem}.jpg", w, h, objects, folder="JPEGImages"))
        annotations += len(objects)
        splits[split] = splits.get(split, 0) + 1
        lists.setdefault((part, split), []).append(stem)
    for (part, split), stems in lists.items():
        path = root / part / "ImageSets" / "Main" / f"{split}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{s}\n" for s in stems))
    return SynthSummary(images=len(plan), annotations=annotations, splits=splits)
