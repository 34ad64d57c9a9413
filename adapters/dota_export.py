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

Usage: ``python -m adapters.dota_export <coco.json> <data_dir> <out_dir> [--points]
[--keep-classes]`` or :func:`export_dota`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from baselines.data import image_path
from tinyset_builder.errors import TinysetError
from tinyset_builder.io import read_json


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


def polygon_line(x: float, y: float, w: float, h: float, cls: str, difficulty: int) -> str:
    """One labelTxt line: the box's 4 corners clockwise from the top-left, class, difficulty."""
    xs = (x, x + w, x + w, x)
    ys = (y, y, y + h, y + h)
    coords = " ".join(f"{a:.2f} {b:.2f}" for a, b in zip(xs, ys, strict=True))
    return f"{coords} {cls} {difficulty}"


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists() or dst.is_symlink():
        dst.unlink()
    try:
        os.symlink(src.resolve(), dst)
    except OSError:  # filesystems without symlinks
        shutil.copyfile(src, dst)


def export_dota(coco_json: Path, data_dir: Path, out_dir: Path, *, class_agnostic: bool = True,
                mode: Literal["boxes", "points"] = "boxes") -> DotaExport:
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
        stem = Path(img["file_name"]).stem
        if stem in seen:
            raise TinysetError(f"{coco_json}: two images named {stem!r}; DOTA needs unique stems")
        seen.add(stem)
        lines = []
        for a in by_image.get(int(img["id"]), []):
            x, y, w, h = (float(v) for v in a["bbox"])
            crowd = bool(a.get("iscrowd", 0))
            if w <= 0 or h <= 0:
                raise TinysetError(f"{coco_json}: annotation {a.get('id')} has no area "
                                   f"({a['bbox']}); DOTA polygons need one")
            if mode == "points" and not crowd and "point" in a:
                px, py = (float(v) for v in a["point"])
                x, y = px - w / 2, py - h / 2
            cls = names.get(int(a["category_id"]))
            if cls is None:
                raise TinysetError(f"{coco_json}: annotation {a.get('id')} has unknown "
                                   f"category_id {a['category_id']}")
            lines.append(polygon_line(x, y, w, h, cls, 2 if crowd else 0))
            ignored += crowd
            objects += not crowd
        (out_dir / "labelTxt" / f"{stem}.txt").write_text(
            "".join(f"{line}\n" for line in lines), encoding="utf-8")
        _link(src, out_dir / "images" / f"{stem}{src.suffix}")
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


def main(argv: list[str] | None = None) -> int:
    """Command line: export one COCO file of a built dataset to DOTA."""
    p = argparse.ArgumentParser(prog="python -m adapters.dota_export", description=__doc__
                                .split("\n\n")[0])
    p.add_argument("coco_json", type=Path)
    p.add_argument("data_dir", type=Path, help="the built dataset (holds images/)")
    p.add_argument("out_dir", type=Path)
    p.add_argument("--points", action="store_true",
                   help="centre each polygon on the annotation's point (points-* variants)")
    p.add_argument("--keep-classes", action="store_true", help="keep the categories")
    args = p.parse_args(argv)
    try:
        res = export_dota(args.coco_json, args.data_dir, args.out_dir,
                          class_agnostic=not args.keep_classes,
                          mode="points" if args.points else "boxes")
    except TinysetError as e:
        print(f"\033[31merror: {e}\033[0m", file=sys.stderr)
        return 2
    print(f"{res.root}: {res.images} images, {res.objects} objects, {res.ignored} ignored")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
