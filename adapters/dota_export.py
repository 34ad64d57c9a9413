"""DOTA-format export of a built TinySet split (or of its ``points-*`` variant).

The oriented point-supervised repositories (PointOBB-v2, PointOBB-v3, Point2RBox-v3: Table I rows
34, 35, 37) read DOTA's layout, not COCO::

    <out>/images/<stem>.<ext>        # symlinks to the built images (copies where links fail)
    <out>/labelTxt/<stem>.txt        # one object per line: x1 y1 x2 y2 x3 y3 x4 y4 class difficulty

Each horizontal TinySet box ``[x, y, w, h]`` becomes its four corners, clockwise from the
top-left (``x1 y1 = x, y``; image coordinates), ``difficulty`` 0. Ignore regions
(``iscrowd = 1``) are written with difficulty 2, which the DOTA tools and MMRotate's
``filter_empty_gt`` / difficulty filter leave out of training. Class-agnostic by default (every
object is ``object``, the paper's protocol); otherwise category names with ``/`` and spaces made
safe for the one-word DOTA class field.

``mode="points"`` (the weak rows, trained from a ``points-*`` variant): those repositories take
each polygon's centre as the annotated point, so the polygon is the box moved to have its centre
on the variant's ``point`` (unchanged for ``points-center``, where the point *is* the centre).

``mode="rotated"`` (pseudo labels of an oriented method, e.g. PointOBB-v3's
``result2ann_obb.py`` output): each ``bbox`` is ``[cx, cy, w, h, angle]`` (radians) and becomes
its rotated rectangle's corners; an annotation whose ``ann_weight`` (the pseudo box's score) is
below 0.05 gets difficulty 1, the rule of PointOBB-v3's own COCO-to-DOTA script.

``for_mmrotate=True`` names files so MMRotate reads them back unambiguously: MMRotate 0.3's
``DOTADataset`` only lists ``<stem>.png`` (the link is named ``.png`` whatever the encoding; its
decoder reads the bytes, not the name), its patch merging groups detections by the part of the
stem before ``__`` (TinySet tiles are ``<source>__x<X>_y<Y>``, so tiles of one source would be
merged), and PointOBB-v2 cuts names at the first ``.``; :func:`dota_stem` replaces ``__`` and
``.`` in the stem with ``--`` and ``-``.

Results come back as rotated boxes (DOTA ``Task1_<class>.txt`` submissions, or MMRotate 1.x's
``<prefix>.bbox.json``); :func:`rotated_to_coco_results` turns each into the COCO result of its
enclosing horizontal box, the box TinySet is evaluated with.

Usage: ``python -m adapters.dota_export <coco.json> <data_dir> <out_dir> [--points | --rotated]
[--keep-classes] [--mmrotate]`` or :func:`export_dota`.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from baselines.data import image_path
from tinyset_builder.errors import TinysetError
from tinyset_builder.io import read_json

PSEUDO_MIN_WEIGHT = 0.05  # PointOBB-v3: pseudo boxes scored below this get difficulty 1


@dataclass(frozen=True, slots=True)
class DotaExport:
    """Where an export went and what it holds."""

    root: Path
    images: int
    objects: int
    ignored: int
    classes: tuple[str, ...]


def dota_class(name: str) -> str:
    """A category name as one DOTA class token (no whitespace; ``/`` → ``__``)."""
    return "-".join(name.replace("/", "__").split())


def dota_stem(file_name: str, *, for_mmrotate: bool = False) -> str:
    """The labelTxt / image stem of an image (see the module docstring for ``for_mmrotate``)."""
    stem = Path(file_name).stem
    return stem.replace("__", "--").replace(".", "-") if for_mmrotate else stem


def rbox_corners(cx: float, cy: float, w: float, h: float, angle: float,
                 ) -> list[tuple[float, float]]:
    """The 4 corners of a rotated rectangle (centre, size, angle in radians, image axes)."""
    c, s = math.cos(angle), math.sin(angle)
    return [(cx + c * dx - s * dy, cy + s * dx + c * dy)
            for dx, dy in ((-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, h / 2), (-w / 2, h / 2))]


def enclosing_xywh(polygon: Sequence[float]) -> list[float]:
    """The horizontal box ``[x, y, w, h]`` enclosing a polygon ``x1 y1 x2 y2 ...``."""
    xs, ys = polygon[0::2], polygon[1::2]
    return [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]


def corners_line(corners: Sequence[tuple[float, float]], cls: str, difficulty: int) -> str:
    """One labelTxt line from 4 corners, class and difficulty."""
    coords = " ".join(f"{a:.2f} {b:.2f}" for a, b in corners)
    return f"{coords} {cls} {difficulty}"


def polygon_line(x: float, y: float, w: float, h: float, cls: str, difficulty: int) -> str:
    """One labelTxt line: the box's 4 corners clockwise from the top-left, class, difficulty."""
    return corners_line([(x, y), (x + w, y), (x + w, y + h), (x, y + h)], cls, difficulty)


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists() or dst.is_symlink():
        dst.unlink()
    try:
        os.symlink(src.resolve(), dst)
    except OSError:  # filesystems without symlinks
        shutil.copyfile(src, dst)


def export_dota(coco_json: Path, data_dir: Path, out_dir: Path, *, class_agnostic: bool = True,
                mode: Literal["boxes", "points", "rotated"] = "boxes",
                for_mmrotate: bool = False) -> DotaExport:
    """Write ``out_dir/images`` and ``out_dir/labelTxt`` for every image of ``coco_json``.

    Raises:
        TinysetError: two images share a file stem (DOTA names labels by stem), an annotation
            without a usable box, or a missing image.
    """
    coco = read_json(coco_json)
    names: Mapping[int, str] = {int(c["id"]): ("object" if class_agnostic
                                               else dota_class(str(c["name"])))
                                for c in coco.get("categories", [])}
    by_image: dict[int, list[Mapping[str, Any]]] = {}
    for a in coco.get("annotations", []):
        by_image.setdefault(int(a["image_id"]), []).append(a)
    split_hint = coco_json.stem if coco_json.stem in ("train", "val", "test") else None
    (out_dir / "labelTxt").mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()
    objects = ignored = 0
    for img in coco.get("images", []):
        src = image_path(data_dir, img["file_name"], img.get("split") or split_hint)
        stem = dota_stem(img["file_name"], for_mmrotate=for_mmrotate)
        if stem in seen:
            raise TinysetError(f"{coco_json}: two images named {stem!r}; DOTA needs unique stems")
        seen.add(stem)
        lines = []
        for a in by_image.get(int(img["id"]), []):
            crowd = bool(a.get("iscrowd", 0))
            cls = names.get(int(a["category_id"]))
            if cls is None:
                raise TinysetError(f"{coco_json}: annotation {a.get('id')} has unknown "
                                   f"category_id {a['category_id']}")
            if mode == "rotated" and len(a["bbox"]) == 5:
                weak = float(a.get("ann_weight", 1.0)) < PSEUDO_MIN_WEIGHT
                cx, cy, w, h, angle = (float(v) for v in a["bbox"])
                lines.append(corners_line(rbox_corners(cx, cy, w, h, angle), cls,
                                          2 if crowd else int(weak)))
                ignored += crowd
                objects += not crowd
                continue
            if mode == "rotated" and not crowd:
                continue  # a point the pseudo-labeller gave no oriented box (their script skips)
            x, y, w, h = (float(v) for v in a["bbox"])
            if w <= 0 or h <= 0:
                raise TinysetError(f"{coco_json}: annotation {a.get('id')} has no area "
                                   f"({a['bbox']}); DOTA polygons need one")
            if mode == "points" and not crowd and "point" in a:
                px, py = (float(v) for v in a["point"])
                x, y = px - w / 2, py - h / 2
            lines.append(polygon_line(x, y, w, h, cls, 2 if crowd else 0))
            ignored += crowd
            objects += not crowd
        (out_dir / "labelTxt" / f"{stem}.txt").write_text(
            "".join(f"{line}\n" for line in lines), encoding="utf-8")
        _link(src, out_dir / "images" / f"{stem}{'.png' if for_mmrotate else src.suffix}")
    return DotaExport(out_dir, len(seen), objects, ignored,
                      tuple(sorted(set(names.values()))))


def read_dota(label_dir: Path) -> dict[str, list[tuple[list[float], str, int]]]:
    """Read labelTxt files back: ``{stem: [(8 coordinates, class, difficulty), ...]}``."""
    out: dict[str, list[tuple[list[float], str, int]]] = {}
    for path in sorted(label_dir.glob("*.txt")):
        rows = []
        for line in path.read_text(encoding="utf-8").splitlines():
            parts = line.split()
            if len(parts) < 9 or ":" in parts[0]:  # header lines (imagesource:, gsd:)
                continue
            rows.append(([float(v) for v in parts[:8]], parts[8],
                         int(parts[9]) if len(parts) > 9 else 0))
        out[path.stem] = rows
    return out


def rotated_to_coco_results(rotated: Path, eval_json: Path, categories: Mapping[str, int], *,
                            for_mmrotate: bool = True) -> list[dict[str, Any]]:
    """Rotated detections -> COCO results of their enclosing horizontal boxes.

    Args:
        rotated: a DOTA submission folder (``Task1_<class>.txt``, lines ``<stem> <score> x1 y1
            ... x4 y4``, MMRotate 0.3's ``--format-only``) or an MMRotate 1.x ``.bbox.json``
            (``image_id`` = stem, ``bbox`` = ``[cx, cy, w, h, angle]``, ``category_id`` =
            0-based label).
        eval_json: the COCO file the images were exported from (stem -> image id).
        categories: DOTA class token (:func:`dota_class` of the exported name) -> exported
            COCO category id, in the configs' class order (label ``i`` is the ``i``-th).
        for_mmrotate: the stems were written with ``for_mmrotate`` (:func:`dota_stem`).

    Raises:
        TinysetError: an unknown image stem or class, or a malformed line (names the file).
    """
    ids = {dota_stem(i["file_name"], for_mmrotate=for_mmrotate): int(i["id"])
           for i in read_json(eval_json).get("images", [])}
    out: list[dict[str, Any]] = []

    def add(where: str, stem: str, cid: int, polygon: Sequence[float], score: float) -> None:
        if stem not in ids:
            raise TinysetError(f"{where}: image {stem!r} is not in {eval_json}")
        out.append({"image_id": ids[stem], "category_id": cid,
                    "bbox": [round(v, 3) for v in enclosing_xywh(polygon)], "score": score})

    if rotated.is_dir():
        for path in sorted(rotated.glob("Task1_*.txt")):
            cls = path.stem.removeprefix("Task1_")
            if cls not in categories:
                raise TinysetError(f"{path}: class {cls!r} is not one of {list(categories)}")
            for k, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
                parts = line.split()
                if not parts:
                    continue
                if len(parts) != 10:
                    raise TinysetError(f"{path}:{k + 1}: expected '<image> <score> x1 y1 ... y4'")
                add(str(path), parts[0], categories[cls],
                    [float(v) for v in parts[2:]], float(parts[1]))
        return out
    entries, ids_in_order = read_json(rotated), list(categories.values())
    for k, r in enumerate(entries if isinstance(entries, list) else []):
        try:
            cx, cy, w, h, angle = (float(v) for v in r["bbox"])
            label, score = int(r["category_id"]), float(r["score"])
        except (KeyError, TypeError, ValueError) as e:
            raise TinysetError(f"{rotated}: entry {k} is not a rotated detection ({e})") from None
        if not 0 <= label < len(categories):
            raise TinysetError(f"{rotated}: entry {k} has label {label}, outside the classes")
        polygon = [v for corner in rbox_corners(cx, cy, w, h, angle) for v in corner]
        add(str(rotated), str(r["image_id"]), ids_in_order[label], polygon, score)
    return out


def main(argv: list[str] | None = None) -> int:
    """Command line: export one COCO file of a built dataset to DOTA."""
    p = argparse.ArgumentParser(prog="python -m adapters.dota_export", description=__doc__
                                .split("\n\n")[0])
    p.add_argument("coco_json", type=Path)
    p.add_argument("data_dir", type=Path, help="the built dataset (holds images/)")
    p.add_argument("out_dir", type=Path)
    how = p.add_mutually_exclusive_group()
    how.add_argument("--points", action="store_true",
                     help="centre each polygon on the annotation's point (points-* variants)")
    how.add_argument("--rotated", action="store_true",
                     help="bbox is [cx, cy, w, h, angle] (an oriented method's pseudo labels)")
    p.add_argument("--keep-classes", action="store_true", help="keep the categories")
    p.add_argument("--mmrotate", action="store_true",
                   help="name files for MMRotate (.png links, no '__' or '.' in stems)")
    args = p.parse_args(argv)
    try:
        res = export_dota(args.coco_json, args.data_dir, args.out_dir,
                          class_agnostic=not args.keep_classes,
                          mode="points" if args.points else "rotated" if args.rotated
                          else "boxes", for_mmrotate=args.mmrotate)
    except TinysetError as e:
        print(f"\033[31merror: {e}\033[0m", file=sys.stderr)
        return 2
    print(f"{res.root}: {res.images} images, {res.objects} objects, {res.ignored} ignored")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
