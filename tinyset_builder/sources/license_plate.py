"""License Plate: CCPD2019 (Chinese City Parking Dataset), labels encoded in the file names.

Provenance: github ``detectRecog/CCPD`` (Xu et al., ECCV 2018), ``CCPD2019.tar.xz``: over 300k
720x1160 photos of parked cars, one plate each. The paper calls the source only "License Plate";
CCPD is the best-supported candidate (see ``manifests/sources/license_plate.toml``). A different
plate dataset would be a new converter; switching which box CCPD yields is :data:`BOX_FROM_CORNERS`.

Layout under ``RAW/license_plate/`` (as the archive unpacks)::

    CCPD2019/ccpd_base/<labelled name>.jpg          # also ccpd_blur, _challenge, _db, _fn,
    CCPD2019/ccpd_rotate/..., ccpd_tilt/..., ccpd_weather/...
    CCPD2019/ccpd_np/<n>.jpg                        # no plate, no label in the name
    CCPD2019/splits/{train,val,test}.txt            # official split, <subset>/<name>.jpg
    CCPD2019/splits/ccpd_<subset>.txt               # per-subset lists (also "split/" in the repo)

Coordinates: see :mod:`tinyset_builder.formats.ccpd_name`; the box is the extent of the four
labelled plate vertices. In ``ccpd_tilt`` that equals the name's own box (field 3), but in
``ccpd_base`` the field-3 box is a looser hand-drawn one that can cut off a vertex; the vertex
extent is the tight, complete box in every subset, so it is the one used.

Quirks:
- split: the lists decide (train/val are ``ccpd_base``, test the other subsets); an image in no
  list falls back on that rule: another subset is ``test``, ``ccpd_base`` has no official split
  (``None``: the build assigns one by hash);
- ``ccpd_np`` images have no plate: kept as images without objects;
- a list entry with no image on disk, or one image in two split lists, is a bad record;
- plate characters, tilt, brightness and blur are kept on each annotation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tinyset_builder.coco import CocoDataset
from tinyset_builder.errors import ErrorPolicy, where
from tinyset_builder.formats.ccpd_name import format_ccpd_name, parse_ccpd_name, read_split_list
from tinyset_builder.paths import relative_posix
from tinyset_builder.sources.base import SourceAssembler, SourceInfo, SynthSummary
from tinyset_builder.synth.canvas import draw_objects, save_image, textured_background

BASE = "CCPD2019"
LIST_DIRS = ("splits", "split")
SPLIT_LISTS = {"train.txt": "train", "val.txt": "val", "test.txt": "test"}
TRAINVAL_SUBSET = "ccpd_base"
NO_PLATE_SUBSET = "ccpd_np"
CATEGORY = "license_plate"
#: True: the extent of the four vertices (module docstring); False: the name's field-3 box.
BOX_FROM_CORNERS = True


def read_lists(base: Path, policy: ErrorPolicy) -> tuple[dict[str, str], dict[str, str]]:
    """``(official split by relative path, where each listed path was listed)``."""
    official: dict[str, str] = {}
    listed: dict[str, str] = {}
    for list_dir in (base / d for d in LIST_DIRS):
        for path in sorted(list_dir.glob("*.txt")):
            split = SPLIT_LISTS.get(path.name)
            for lineno, rel in read_split_list(path, policy):
                listed.setdefault(rel, where(path, lineno))
                if split is None:
                    continue
                if official.get(rel, split) != split:
                    policy.fail(where(path, lineno), f"{rel} is also in {official[rel]}.txt")
                    continue
                official[rel] = split
    return official, listed


def convert(root: Path, info: SourceInfo, policy: ErrorPolicy) -> CocoDataset:
    """Read every ``ccpd_*`` folder; split from the lists, boxes from the file names."""
    asm = SourceAssembler(info, root, policy)
    base = root / BASE
    if not base.is_dir():
        policy.fatal(str(base), "CCPD2019/ folder not found (unpack CCPD2019.tar.xz here)")
    official, listed = read_lists(base, policy)
    images = {relative_posix(p, base): p for p in sorted(base.glob("ccpd_*/*"))
              if p.suffix.lower() == ".jpg"}
    for rel in sorted(set(listed) - images.keys()):
        policy.fail(listed[rel], f"listed image {rel} not found under {base}")
    for rel, image in images.items():
        subset = rel.split("/", 1)[0]
        split = official.get(rel) or (None if subset == TRAINVAL_SUBSET else "test")
        if subset == NO_PLATE_SUBSET:
            asm.add_image(f"{BASE}/{rel}", split=split, location=str(image))
            continue
        try:
            label = parse_ccpd_name(image.name)
        except ValueError as e:
            policy.fail(str(image), str(e))
            continue
        key = asm.add_image(f"{BASE}/{rel}", split=split, location=str(image))
        if key is None:
            continue
        box = label.corners_xywh() if BOX_FROM_CORNERS else label.box_xywh()
        asm.add_box(key, box, CATEGORY, location=str(image),
                    extra={"plate": list(label.plate), "tilt": list(label.tilt),
                           "brightness": label.brightness, "blur": label.blur})
    return asm.finish()


def synthesize(root: Path, seed: int) -> SynthSummary:
    """Five 720x1160 car photos: 3 ccpd_base (train, train, val), 1 ccpd_tilt, 1 ccpd_np."""
    rng = np.random.default_rng(seed)
    base = root / BASE
    plan = [("ccpd_base", "train"), ("ccpd_base", "train"), ("ccpd_base", "val"),
            ("ccpd_tilt", "test"), ("ccpd_np", None)]
    lists: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    splits: dict[str, int] = {}
    annotations = 0
    for i, (subset, split) in enumerate(plan):
        pixels = textured_background(rng, 720, 1160)
        if subset == NO_PLATE_SUBSET:
            name = f"{seed * 10 + i}.jpg"
        else:
            w, h = int(rng.integers(60, 200)), int(rng.integers(20, 60))
            x, y = int(rng.integers(0, 720 - w)), int(rng.integers(300, 1100 - h))
            draw_objects(pixels, [(x, y, w, h)], [0])
            corners = [(x + w, y + h), (x, y + h), (x, y), (x + w, y)]
            # ccpd_base's field-3 box is looser than the vertices: inset it by 2 px on the left.
            box = (x + 2, y, x + w, y + h) if subset == TRAINVAL_SUBSET else (x, y, x + w, y + h)
            area = f"{round(w * h / (720 * 1160) * 10**4):04d}"
            name = format_ccpd_name(area, (int(rng.integers(70, 110)), int(rng.integers(70, 110))),
                                    box, corners, [int(v) for v in rng.integers(0, 34, size=7)],
                                    int(rng.integers(0, 200)), int(rng.integers(0, 200)))
            annotations += 1
        save_image(base / subset / name, pixels)
        if split is not None:
            lists[split].append(f"{subset}/{name}")
        resolved = split or "test"  # ccpd_np is not listed: by the rule it is test
        splits[resolved] = splits.get(resolved, 0) + 1
    (base / "splits").mkdir(parents=True, exist_ok=True)
    for list_name, split in SPLIT_LISTS.items():
        (base / "splits" / list_name).write_text("".join(f"{r}\n" for r in lists[split]))
    (base / "splits" / "ccpd_tilt.txt").write_text("".join(f"{r}\n" for r in lists["test"]))
    return SynthSummary(images=len(plan), annotations=annotations, splits=splits)
