"""AI-TOD-v2 (satellite): tiny objects in 800x800 aerial tiles, COCO JSON per split, plus the
AI-TOD toolkit's official xView metadata.

Layout under ``RAW/aitod_v2/``::

    annotations/aitodv2_{train,val,test}.json      (aitodv2_trainval.json also accepted)
    images/{train,val,test}/*.png                  (or images/trainval/, or <split>/images/)
    aitodtoolkit/aitod_xview/aitod_xview_{train,val,trainval,test}.txt   official xView tile lists
    aitodtoolkit/aitod_xview/converted_class.txt                         xView → AI-TOD classes

The ``aitodtoolkit/`` folder is the one from the official ``jwwangchn/AI-TOD`` repository; it is
needed anyway to regenerate the xView tiles, which are not redistributed.

Coordinates: ``bbox = [x, y, w, h]`` in pixels; many boxes are under 8 px, some under 1 px.

How the xView metadata is used (when ``aitodtoolkit/aitod_xview/`` is present):
- **tile lists = official split of the xView part.** A tile (named
  ``<xview_id>__<x>_<y>.png``) must appear in the list of the split whose JSON holds it; one
  listed under another split, or under none, is a bad record (it would leak between splits).
  When only ``aitodv2_trainval.json`` is present, xView tiles take train or val from the lists
  and the other images get no official split (the build assigns one).
- A listed tile whose PNG is missing gets a specific error saying to run
  ``generate_aitod_imgs.py`` (the usual cause: the xView part was not regenerated).
- **class mapping:** ``converted_class.txt`` says which AI-TOD classes an xView object can
  become; every target must be a manifest category (else the toolkit and manifest disagree:
  fatal), and boxes on xView tiles whose class no xView class maps to are counted as
  ``xview_category_outside_mapping`` (kept: v2 relabelled the tiles, so this is a signal, not
  an error).

Other quirks: category ids are mapped by name; the last tile of a row or column is shifted to fit
the xView image, so tile offsets are not always multiples of 600.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tinyset_builder.coco import CocoDataset
from tinyset_builder.errors import ErrorPolicy, where
from tinyset_builder.formats.coco_json import (
    CocoJsonAnnotation,
    CocoJsonFile,
    CocoJsonImage,
    read_coco_json,
)
from tinyset_builder.formats.text import read_lines, read_text
from tinyset_builder.sources.base import SourceAssembler, SourceInfo, SynthSummary, load_info
from tinyset_builder.sources.coco_common import (
    CocoSynth,
    SynthTally,
    add_coco_file,
    first_existing,
)

SPLITS = ("train", "val", "test")
XVIEW_DIR = "aitodtoolkit/aitod_xview"
XVIEW_TILE = re.compile(r"^(\d+)__(\d+)_(\d+)\.png$")


def is_xview_tile(file_name: str) -> bool:
    """True for an xView-derived tile name ``<xview_id>__<x>_<y>.png``."""
    return XVIEW_TILE.match(Path(file_name).name) is not None


def read_tile_list(path: Path, policy: ErrorPolicy) -> list[str] | None:
    """Parse an ``aitod_xview_<split>.txt`` list; ``None`` (after reporting) if unreadable.

    The official files hold one Python list literal on one line
    (``['2053__2298_1200.png', ...]``); one name per line is accepted too.
    """
    text = read_text(path).strip()
    if text.startswith("["):
        try:
            names = ast.literal_eval(text)  # literals only: never executes code
        except (ValueError, SyntaxError, RecursionError) as e:
            policy.fail(where(path, getattr(e, "lineno", 1) or 1),
                        f"not a Python list of tile names ({e.__class__.__name__})")
            return None
        if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
            policy.fail(where(path, 1), "expected a list of tile-name strings")
            return None
        return names
    return [line for _, line in read_lines(path, policy)]


def read_class_mapping(path: Path, policy: ErrorPolicy) -> dict[str, str | None]:
    """Parse ``converted_class.txt`` (``<xView class>:<AI-TOD class or None>`` per line)."""
    mapping: dict[str, str | None] = {}
    for lineno, line in read_lines(path, policy):
        xview, sep, target = line.rpartition(":")
        if not sep or not xview.strip() or not target.strip():
            policy.fail(where(path, lineno), f"expected '<xView class>:<AI-TOD class>', "
                                             f"got {line!r}")
            continue
        value = None if target.strip() == "None" else target.strip()
        if mapping.get(xview.strip(), value) != value:
            policy.fail(where(path, lineno), f"xView class {xview.strip()!r} mapped twice "
                                             f"differently")
            continue
        mapping[xview.strip()] = value
    return mapping


@dataclass
class XviewMetadata:
    """The toolkit's official tile lists (tile → split) and class mapping, as far as present."""

    folder: Path
    tile_split: dict[str, str] = field(default_factory=dict)
    lists: dict[str, Path] = field(default_factory=dict)
    mapping: dict[str, str | None] = field(default_factory=dict)

    @property
    def targets(self) -> frozenset[str]:
        """The AI-TOD classes some xView class maps to."""
        return frozenset(v for v in self.mapping.values() if v is not None)


def load_xview_metadata(root: Path, info: SourceInfo, policy: ErrorPolicy,
                        ) -> XviewMetadata | None:
    """Read ``aitodtoolkit/aitod_xview/`` if present; check the mapping against the manifest."""
    folder = root / XVIEW_DIR
    if not folder.is_dir():
        return None
    meta = XviewMetadata(folder)
    for split in SPLITS:
        path = folder / f"aitod_xview_{split}.txt"
        names = read_tile_list(path, policy) if path.is_file() else None
        for name in names or []:
            if meta.tile_split.setdefault(name, split) != split:
                policy.fail(str(path), f"tile {name!r} is also listed in "
                                       f"aitod_xview_{meta.tile_split[name]}.txt")
        if names is not None:
            meta.lists[split] = path
    mapping_path = folder / "converted_class.txt"
    if mapping_path.is_file():
        meta.mapping = read_class_mapping(mapping_path, policy)
        unknown = sorted(meta.targets - set(info.categories))
        if unknown:
            policy.fatal(str(mapping_path), f"maps xView classes to {unknown}, which are not "
                                            f"AI-TOD-v2 categories {list(info.categories)}")
    return meta


def _annotation_files(root: Path) -> list[tuple[Path, str | None]]:
    ann = root / "annotations"
    files = [(ann / f"aitodv2_{s}.json", s) for s in SPLITS]
    found: list[tuple[Path, str | None]] = [(p, s) for p, s in files if p.is_file()]
    trainval = ann / "aitodv2_trainval.json"
    if not any(s in ("train", "val") for _, s in found) and trainval.is_file():
        # trainval = train ∪ val: read only when the two are absent, split by the tile lists.
        found.insert(0, (trainval, None))
    return found


def _image_candidates(split: str | None, file_name: str) -> list[str]:
    folders = [f"images/{split}", f"{split}/images"] if split else []
    if split in (None, "train", "val"):
        folders += ["images/trainval", "trainval/images"]
    return [f"{d}/{file_name}" for d in [*folders, "images"]]


def convert(root: Path, info: SourceInfo, policy: ErrorPolicy) -> CocoDataset:
    """Read the AI-TOD-v2 JSON files, checking the xView part against the official metadata."""
    asm = SourceAssembler(info, root, policy)
    files = _annotation_files(root)
    if not files:
        policy.fatal(str(root / "annotations"), "no aitodv2_{train,val,test}.json found")
    meta = load_xview_metadata(root, info, policy)
    for path, file_split in files:
        doc = read_coco_json(path, policy)
        if doc is not None:
            _add_file(asm, meta, doc, file_split)
    return asm.finish()


def _add_file(asm: SourceAssembler, meta: XviewMetadata | None, doc: CocoJsonFile,
              file_split: str | None) -> None:
    """Add one JSON file's images, refusing xView tiles the official metadata contradicts."""
    by_image = doc.annotations_by_image()
    xview_images = {im.id for im in doc.images if is_xview_tile(im.file_name)}

    def split_of(im: CocoJsonImage) -> str | None:
        if file_split is None and meta is not None:
            return meta.tile_split.get(Path(im.file_name).name)
        return file_split

    def locate(im: CocoJsonImage) -> str:
        return first_existing(asm.root, _image_candidates(split_of(im), im.file_name))

    def refuse(im: CocoJsonImage) -> bool:
        reason = _xview_problem(asm.root, meta, im, doc.path, file_split, locate(im))
        if reason is None:
            asm.counts["xview_tiles"] += im.id in xview_images
            return False
        asm.policy.fail(im.location, reason)
        asm.counts["dropped_with_bad_image"] += len(by_image.get(im.id, []))
        return True

    def category(ann: CocoJsonAnnotation) -> tuple[str, bool]:
        if (meta is not None and meta.mapping and ann.image_id in xview_images
                and ann.category not in meta.targets):
            asm.counts["xview_category_outside_mapping"] += 1
        return ann.category, ann.ignore

    add_coco_file(asm, doc, split=split_of, locate=locate, skip_image=refuse, category=category)


def _xview_problem(root: Path, meta: XviewMetadata | None, im: CocoJsonImage, path: Path,
                   file_split: str | None, rel: str) -> str | None:
    """Why an xView tile entry cannot be used, or ``None`` (non-xView images: always None)."""
    name = Path(im.file_name).name
    if not is_xview_tile(name):
        return None
    if meta is not None and meta.lists:
        official = meta.tile_split.get(name)
        if official is None:
            return (f"xView tile {name!r} is in no official list "
                    f"({', '.join(p.name for p in meta.lists.values())})")
        if file_split is not None and official != file_split:
            return (f"xView tile {name!r} is listed in aitod_xview_{official}.txt but "
                    f"annotated in {path.name}")
    if not (root / rel).is_file():
        return (f"xView tile {name!r} not found at {rel}: AI-TOD's xView part must be "
                f"regenerated with aitodtoolkit/generate_aitod_imgs.py from the xView train set")
    return None


# The official converted_class.txt (jwwangchn/AI-TOD, MIT): xView class → AI-TOD class.
XVIEW_CLASSES: tuple[tuple[str, str | None], ...] = (
    ("Fixed-wing Aircraft", "airplane"), ("Small Aircraft", "airplane"),
    ("Cargo Plane", "airplane"), ("Helicopter", None), ("Passenger Vehicle", "vehicle"),
    ("Small Car", "vehicle"), ("Bus", "vehicle"), ("Pickup Truck", "vehicle"),
    ("Utility Truck", "vehicle"), ("Truck", "vehicle"), ("Cargo Truck", "vehicle"),
    ("Truck w/Box", "vehicle"), ("Truck Tractor", "vehicle"), ("Trailer", "vehicle"),
    ("Truck w/Flatbed", "vehicle"), ("Truck w/Liquid", "vehicle"), ("Crane Truck", "vehicle"),
    ("Railway Vehicle", "vehicle"), ("Passenger Car", "vehicle"), ("Cargo Car", "vehicle"),
    ("Flat Car", "vehicle"), ("Tank car", "vehicle"), ("Locomotive", "vehicle"),
    ("Maritime Vessel", "ship"), ("Motorboat", "ship"), ("Sailboat", "ship"),
    ("Tugboat", "ship"), ("Barge", "ship"), ("Fishing Vessel", "ship"), ("Ferry", "ship"),
    ("Yacht", "ship"), ("Container Ship", "ship"), ("Oil Tanker", "ship"),
    ("Engineering Vehicle", "vehicle"), ("Tower crane", None), ("Container Crane", None),
    ("Reach Stacker", None), ("Straddle Carrier", None), ("Mobile Crane", "vehicle"),
    ("Dump Truck", "vehicle"), ("Haul Truck", "vehicle"), ("Scraper/Tractor", "vehicle"),
    ("Front loader/Bulldozer", "vehicle"), ("Excavator", "vehicle"),
    ("Cement Mixer", "vehicle"), ("Ground Grader", "vehicle"), ("Hut/Tent", None),
    ("Shed", None), ("Building", None), ("Aircraft Hangar", None), ("Damaged Building", None),
    ("Facility", None), ("Construction Site", None), ("Vehicle Lot", None), ("Helipad", None),
    ("Storage Tank", "storage-tank"), ("Shipping container lot", None),
    ("Shipping Container", None), ("Pylon", None), ("Tower", None), ("other", None),
    ("other", None),
)


def synthesize(root: Path, seed: int) -> SynthSummary:
    """Five 800x800 PNG tiles (xView tiles labelled through the class mapping) + toolkit lists."""
    rng = np.random.default_rng(seed)
    names = load_info("aitod_v2").categories
    ids = {n: i for i, n in enumerate(names, start=1)}
    mapped = [(x, t) for x, t in XVIEW_CLASSES if t is not None]
    tally = SynthTally()
    plan = {"train": ["xview", "other"], "val": ["xview", "other"], "test": ["xview"]}
    lists: dict[str, list[str]] = {}
    for s, (split, kinds) in enumerate(plan.items()):
        synth = CocoSynth([(i, n) for n, i in ids.items()], tally)
        lists[split] = []
        for k, kind in enumerate(kinds):
            if kind == "xview":
                # The last tile of a row is shifted to fit the xView image (offset 2398).
                x, y = (600 * k, 2398) if split == "train" else (1200, 600 * k)
                name = f"{100 * seed + 10 * s + k}__{x}_{y}.png"
                lists[split].append(name)
            else:
                name = f"{seed:02d}{s}{k:04d}.png"
            image_id = synth.draw(rng, root / "images" / split / name, file_name=name,
                                  width=800, height=800, n_objects=50, split=split,
                                  min_size=2, max_size=14)
            if kind == "xview":
                # xView objects get their AI-TOD class through converted_class.txt, as the
                # official toolkit produced them.
                for ann in synth.annotations:
                    if ann["image_id"] == image_id:
                        ann["category_id"] = ids[mapped[int(rng.integers(len(mapped)))][1]]
            # A sub-pixel box (AI-TOD has some) and one cut by the right edge.
            synth.box(image_id, (400.2, 300.7, 0.6, 0.8), ids["vehicle"])
            synth.box(image_id, (795.0, 500.0, 9.0, 7.0), ids["ship"])
        synth.write(root / "annotations" / f"aitodv2_{split}.json")
    folder = root / XVIEW_DIR
    folder.mkdir(parents=True, exist_ok=True)
    lists["trainval"] = lists["train"] + lists["val"]
    for split, tiles in lists.items():
        (folder / f"aitod_xview_{split}.txt").write_text(repr(tiles))
    (folder / "converted_class.txt").write_text(
        "\n".join(f"{x}:{t}" for x, t in XVIEW_CLASSES))
    return tally.summary()
