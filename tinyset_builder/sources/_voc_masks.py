"""Helpers shared by the VOC-XML and mask sources (LS-SSDD, SCUT-HEAD, Pest24, SIRST, IRSTD-1K).

- :func:`read_split_lists`: official split lists (one image id per line) → id → split;
- :func:`add_voc_annotation`: one parsed VOC file → an image and its boxes in the assembler;
- :func:`add_mask_image`: an image whose boxes are its binary masks' components;
- :func:`find_base`, :func:`find_dir`: trees wrapped in one more folder, and folders
  that mirrors nest in themselves (``A/A/``);
- :func:`layout_hint`: the expected layout on one line, for errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from tinyset_builder.coco import SPLITS
from tinyset_builder.errors import ErrorPolicy, SourceError, where
from tinyset_builder.formats.masks import (
    MIN_TARGET_AREA,
    MaskBox,
    binary_mask_boxes,
    foreground,
    read_label_image,
)
from tinyset_builder.formats.text import read_lines
from tinyset_builder.formats.voc_xml import VocAnnotation, read_voc_xml, voc_xywh
from tinyset_builder.imageio import image_size
from tinyset_builder.sources.base import SourceAssembler, SourceInfo


def layout_hint(info: SourceInfo) -> str:
    """The manifest's layout tree on one line, for a one-line "folder not found" error."""
    return "expected layout: " + "; ".join(
        line.strip() for line in info.layout.strip().splitlines() if line.strip())


def find_base(root: Path, *markers: str) -> Path:
    """``root``, or its only sub-folder when the download wrapped the tree in one more folder.

    A tree is recognised by any of ``markers`` (e.g. ``Annotations_sub``) existing in it.
    """
    if any((root / m).exists() for m in markers):
        return root
    children = [d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")]
    if len(children) == 1 and any((children[0] / m).exists() for m in markers):
        return children[0]
    return root


def find_dir(parent: Path, name: str) -> Path:
    """``parent/name``, descending while it holds a folder of the same name (Kaggle mirrors)."""
    path = parent / name
    while (path / name).is_dir():
        path = path / name
    return path


def read_split_lists(lists: Mapping[str, Path], policy: ErrorPolicy,
                     ) -> dict[str, tuple[str, str]]:
    """Read the lists that exist among ``{split: file}``; returns ``{image id: (split, where)}``.

    ``where`` is ``file:line`` of the id's entry, for errors about it. Ids are the list lines
    stripped of whitespace, of a folder prefix and of an image extension. An id listed under two
    different splits is a bad record (its split would be ambiguous).
    """
    out: dict[str, tuple[str, str]] = {}
    for split, path in lists.items():
        if not path.is_file():
            continue
        for lineno, text in read_lines(path, policy):
            image_id = text.split()[0].rsplit("/", 1)[-1]
            stem, dot, ext = image_id.rpartition(".")
            if dot and ext.lower() in ("jpg", "jpeg", "png", "tif", "tiff", "bmp"):
                image_id = stem
            if image_id in out and out[image_id][0] != split:
                policy.fail(where(path, lineno), f"{image_id!r} is also listed for split "
                                                 f"{out[image_id][0]!r} at {out[image_id][1]}")
                continue
            out.setdefault(image_id, (split, where(path, lineno)))
    return out


def header_size(asm: SourceAssembler, relative: str, *, location: str,
                ) -> tuple[int, int] | None:
    """An image's ``(width, height)`` from its header (safe path); None when reported bad."""
    try:
        return image_size(asm.path(relative, location=location))
    except SourceError as e:
        asm.policy.fail(location, str(e))
        return None


def add_image_checked(asm: SourceAssembler, relative: str, *, split: str | None,
                      location: str) -> tuple[str, int, int] | None:
    """Register an image, reading its size from the header; returns ``(key, width, height)``."""
    size = header_size(asm, relative, location=location)
    if size is None:
        return None
    key = asm.add_image(relative, split=split, width=size[0], height=size[1], location=location)
    return None if key is None else (key, size[0], size[1])


def add_voc_annotation(asm: SourceAssembler, ann: VocAnnotation, image_relative: str, *,
                       split: str | None, aliases: Mapping[str, str] | None = None,
                       inclusive: bool = False) -> str | None:
    """Add the image of one VOC file and its boxes; returns the image key (None if skipped).

    The image header's size wins over ``<size>`` (tools sometimes write the size of a resized
    or rotated copy); a disagreement is counted as ``xml_size_differs_from_image``.
    ``difficult`` objects are kept with ``iscrowd=1``: VOC's own evaluation ignores them, which
    is what ``iscrowd`` means to the COCO evaluator. An object without ``<bndbox>`` has no box and
    is counted as ``dropped_object_without_bndbox``. ``aliases`` maps native names to manifest
    categories; any other name must be a manifest category (else it is an unknown-category error).
    """
    added = add_image_checked(asm, image_relative, split=split, location=str(ann.path))
    if added is None:
        return None
    key, width, height = added
    if ann.width and ann.height and (ann.width, ann.height) != (width, height):
        asm.counts["xml_size_differs_from_image"] += 1
    for obj in ann.objects:
        if obj.xyxy is None:
            asm.counts["dropped_object_without_bndbox"] += 1
            continue
        name = (aliases or {}).get(obj.name, obj.name)
        asm.add_box(key, voc_xywh(obj.xyxy, inclusive=inclusive), name, location=obj.location,
                    iscrowd=obj.difficult, extra={"difficult": int(obj.difficult),
                                                  "truncated": int(obj.truncated)})
    return key


def add_voc_folder(asm: SourceAssembler, folder: Path, prefix: str, lists_dir: Path,
                   policy: ErrorPolicy, *, aliases: Mapping[str, str] | None = None) -> None:
    """Add a Pascal VOC tree: ``folder/Annotations/*.xml`` with images ``JPEGImages/<stem>.jpg``.

    ``prefix`` is the folder's path under the source root (``""`` or ``"Part_A/"``), and the
    official split of each file comes from ``lists_dir/{train,val,test}.txt`` (none if unlisted).
    """
    lists = read_split_lists({s: lists_dir / f"{s}.txt" for s in SPLITS}, policy)
    for xml in sorted((folder / "Annotations").glob("*.xml")):
        ann = read_voc_xml(xml, policy)
        if ann is None:
            continue
        split = lists[xml.stem][0] if xml.stem in lists else None
        add_voc_annotation(asm, ann, f"{prefix}JPEGImages/{xml.stem}.jpg", split=split,
                           aliases=aliases)


def mask_components(asm: SourceAssembler, mask_paths: list[Path], *, size: tuple[int, int],
                    ) -> list[MaskBox] | None:
    """Connected components of the union of ``mask_paths`` (one image's masks), as boxes.

    Components below :data:`MIN_TARGET_AREA` pixels are counted as ``dropped_mask_speck``. A mask
    that cannot be decoded, or whose size differs from the image's, is a bad record: returns None
    so the caller can leave the whole image out rather than keep it as a false negative.
    """
    union = None
    for path in mask_paths:
        try:
            mask = read_label_image(path)
        except SourceError as e:
            asm.policy.fail(str(path), str(e).removeprefix(f"{path}: "))
            return None
        if (mask.shape[1], mask.shape[0]) != size:
            asm.policy.fail(str(path), f"mask is {mask.shape[1]}x{mask.shape[0]} but its image "
                                       f"is {size[0]}x{size[1]}")
            return None
        fg = foreground(mask)
        union = fg if union is None else union | fg
    if union is None:
        return []
    boxes, specks = binary_mask_boxes(union, min_area=MIN_TARGET_AREA)
    if specks:
        asm.counts["dropped_mask_speck"] += specks
    return boxes


def add_mask_image(asm: SourceAssembler, relative: str, mask_paths: list[Path], category: str,
                   *, split: str | None, location: str) -> str | None:
    """Add an image whose boxes are its masks' components; returns its key (None if skipped)."""
    size = header_size(asm, relative, location=location)
    if size is None:
        return None
    boxes = mask_components(asm, mask_paths, size=size)
    if boxes is None:
        return None
    key = asm.add_image(relative, split=split, width=size[0], height=size[1], location=location)
    if key is None:
        return None
    for k, box in enumerate(boxes, start=1):
        asm.add_box(key, box.xywh, category, location=where(mask_paths[0], f"component {k}"),
                    extra={"mask_area": box.area})
    return key
