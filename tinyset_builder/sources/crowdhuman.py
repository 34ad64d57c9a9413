"""CrowdHuman (daily life): crowded street scenes, one ``.odgt`` JSON line per image.

Layout under ``RAW/crowdhuman/`` (``CrowdHuman_train0{1,2,3}.zip`` and ``CrowdHuman_val.zip``
all unpack into ``Images/``)::

    Images/<ID>.jpg
    annotation_train.odgt
    annotation_val.odgt

Coordinates: ``[x, y, w, h]`` in pixels for each of ``fbox`` (full body), ``vbox`` (visible
body) and ``hbox`` (head).

Which box becomes the annotation is the manifest option ``[build] box``: ``"hbox"`` (default:
heads are the small objects of a crowd photo, while full bodies are mostly large and would
make TinySet's 40 % large-object filter drop many images), ``"fbox"`` or ``"vbox"`` (the
pedestrians the paper's daily-life text mentions). Heads are category ``head``, bodies
``person``.

Quirks:
- ``tag == "mask"`` (crowds, reflections, posters) becomes an ignore region ``mask`` with
  ``iscrowd = 1``; a person with ``extra.ignore = 1`` keeps its category with ``iscrowd = 1``,
  and so does a head with ``head_attr.ignore = 1`` when heads are used (a head keeps the
  ignore flag of its person too: an ignored person's head is no positive either);
- a head annotation carries the head's own attributes (``head_attr``: ``occ``, ``unsure``) in
  its ``extra``, a body annotation the body's (``extra``: ``occ``); both keep ``box_id``;
- ``fbox`` often runs outside the image (negative, or past the bottom): clipped by the
  assembler and counted as ``clipped_to_image``;
- an *ignored* record whose chosen box is empty (w or h <= 0) carries no information and is
  counted as ``dropped_empty_ignored_box``; an empty box on a normal record is a bad record;
- image IDs contain commas (``283554,35288000868e92d4``); the file is ``Images/<ID>.jpg``;
- the test set has no labels; only train and val are read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tinyset_builder.boxes import XYWH
from tinyset_builder.coco import CocoDataset
from tinyset_builder.errors import ErrorPolicy, TinysetError
from tinyset_builder.formats.odgt import BOX_KEYS, OdgtBox, format_odgt_line, odgt_gtbox, read_odgt
from tinyset_builder.sources.base import MANIFEST_DIR, SourceAssembler, SourceInfo, SynthSummary
from tinyset_builder.sources.coco_common import SynthTally
from tinyset_builder.synth.canvas import save_image, scene

SPLITS = {"annotation_train.odgt": "train", "annotation_val.odgt": "val"}
DEFAULT_BOX = "hbox"


def chosen_box(info: SourceInfo) -> str:
    """The manifest's ``[build] box`` (``hbox``, ``fbox`` or ``vbox``), checked."""
    box = info.build.get("box", DEFAULT_BOX)
    if box not in BOX_KEYS:
        raise TinysetError(f"{MANIFEST_DIR / (info.name + '.toml')}: [build] box = {box!r}, "
                           f"expected one of {', '.join(BOX_KEYS)}")
    return str(box)


def _annotation(gt: OdgtBox, key: str) -> tuple[XYWH | None, str, bool, dict[str, Any]]:
    """``(box, category, ignore, extra)`` of one gtbox for the chosen box key.

    ``extra`` keeps ``box_id`` and the occlusion attributes of the object the box outlines: the
    head's (``head_attr``) for ``hbox``, the body's (``extra``) otherwise.
    """
    box_id = {"box_id": gt.extra["box_id"]} if "box_id" in gt.extra else {}
    if gt.tag == "mask":
        # Mask regions repeat one box under all three keys; take the chosen one if present.
        box = gt.boxes.get(key) or next(iter(gt.boxes.values()), None)
        return box, "mask", True, box_id
    if key == "hbox":
        attrs = {k: gt.head_attr[k] for k in ("occ", "unsure") if k in gt.head_attr}
        return gt.boxes.get(key), "head", gt.ignore or gt.head_ignore, box_id | attrs
    attrs = {"occ": gt.extra["occ"]} if "occ" in gt.extra else {}
    return gt.boxes.get(key), "person", gt.ignore, box_id | attrs


def convert(root: Path, info: SourceInfo, policy: ErrorPolicy) -> CocoDataset:
    """Read ``annotation_{train,val}.odgt``; one image per line."""
    key = chosen_box(info)
    asm = SourceAssembler(info, root, policy)
    found = False
    for name, split in SPLITS.items():
        path = root / name
        if not path.is_file():
            continue
        found = True
        for record in read_odgt(path, policy):
            loc = f"{path}:{record.line}"
            image = asm.add_image(f"Images/{record.id}.jpg", split=split, location=loc)
            if image is None:
                asm.counts["dropped_with_bad_image"] += len(record.boxes)
                continue
            for gt in record.boxes:
                if gt.tag not in ("person", "mask"):
                    policy.fail(gt.location, f"unknown tag {gt.tag!r} (expected person or mask)")
                    continue
                box, category, ignore, extra = _annotation(gt, key)
                if box is None:
                    policy.fail(gt.location, f"{gt.tag} has no {key}")
                    continue
                if ignore and (box[2] <= 0 or box[3] <= 0):
                    asm.counts["dropped_empty_ignored_box"] += 1
                    continue
                asm.add_box(image, box, category, iscrowd=ignore, location=gt.location,
                            extra=extra)
    if not found:
        policy.fatal(str(root), "no annotation_train.odgt or annotation_val.odgt found")
    return asm.finish()


def synthesize(root: Path, seed: int) -> SynthSummary:
    """Four crowd photos (up to 1600 px) with small drawn heads and bodies that run off the
    image, a mask region, an ignored person, an ignored head and an empty ignored head box.

    Counts follow the default ``hbox`` choice.
    """
    rng = np.random.default_rng(seed)
    tally = SynthTally()
    plan = {"annotation_train.odgt": [(1200, 800), (800, 1100), (1600, 900)],
            "annotation_val.odgt": [(1024, 683)]}
    for ann_name, sizes in plan.items():
        lines = []
        for k, (w, h) in enumerate(sizes):
            image_id = f"{273271 + 17 * k + 1000 * seed},{rng.integers(16 ** 14):x}"
            pixels, heads, _ = scene(rng, w, h, 40, 1, min_size=5, max_size=20)
            save_image(root / "Images" / f"{image_id}.jpg", pixels)
            gts = []
            for j, (x, y, hw, hh) in enumerate(heads):
                # Body below the head, 3 heads wide and 7 tall: often past the bottom edge.
                fbox = [x - hw, y - 2, 3 * hw, 7 * hh]
                vbox = [x - hw, y - 2, 3 * hw, 4 * hh]
                gts.append(odgt_gtbox("person", fbox, vbox, [x, y, hw, hh], box_id=j,
                                      ignore=j == 1, head_ignore=j == 2, occ=j % 2,
                                      head_occ=int(j % 3 == 0)))
            # A poster region (mask), and an ignored person whose head box is empty.
            gts.append(odgt_gtbox("mask", [5, 5, 120, 90], [5, 5, 120, 90], [5, 5, 120, 90],
                                  ignore=True))
            gts.append(odgt_gtbox("person", [w - 60, 40, 50, 150], [w - 60, 40, 50, 100],
                                  [w - 40, 40, 0, 0], box_id=len(heads), ignore=True))
            lines.append(format_odgt_line(image_id, gts))
            tally.image(SPLITS[ann_name])
            tally.box(n=len(heads) - 2)
            tally.box(ignore=True, n=3)  # ignored person, ignored head, mask
        (root / ann_name).parent.mkdir(parents=True, exist_ok=True)
        (root / ann_name).write_text("\n".join(lines) + "\n")
    return tally.summary()
