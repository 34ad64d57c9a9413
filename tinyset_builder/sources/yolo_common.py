"""What the YOLO-labelled sources share (SH17, VisAlgae 2023, DFL and Tacna Olive).

Pairing images with label files, scaling normalised boxes by the image's real size, reading a
Roboflow export (``{train,valid,test}/{images,labels}`` + ``data.yaml``), and writing a synthetic
YOLO-labelled image. The source modules add only their layout, split rule and quirks.

Pairing rules (those of Ultralytics): ``labels/<stem>.txt`` belongs to ``images/<stem>.<ext>``; an
image without a label file is an image with no objects; a label file without an image is a bad
record; ``classes.txt`` (written by LabelImg beside the labels) is a class list, not a label file.
A split whose ``labels/`` folder is absent altogether (an unlabelled challenge test set) is left
out and counted as ``dropped_unlabelled_images``: its images are unannotated, not empty.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from tinyset_builder.coco import CocoDataset
from tinyset_builder.errors import ErrorPolicy, SourceError, where
from tinyset_builder.formats.yolo_txt import (
    IMAGE_SUFFIXES,
    find_images,
    format_data_yaml,
    format_yolo_row,
    read_class_names,
    read_yolo_txt,
)
from tinyset_builder.paths import relative_posix
from tinyset_builder.sources.base import SourceAssembler, SourceInfo
from tinyset_builder.synth.canvas import save_image, scene

#: Roboflow's export folders and the splits they hold.
ROBOFLOW_SPLITS = {"train": "train", "valid": "val", "test": "test"}
#: Not label files although they sit in ``labels/``.
NOT_LABELS = frozenset({"classes.txt"})

Pair = tuple[Path, Path | None]


def yolo_pairs(images_dir: Path, labels_dir: Path, policy: ErrorPolicy) -> list[Pair] | None:
    """``(image, label or None)`` for every image in ``images_dir``, sorted by image name.

    Returns None when ``labels_dir`` does not exist (the split is unlabelled). A label file whose
    image is missing is reported through ``policy``.
    """
    if not labels_dir.is_dir():
        return None
    images: dict[str, Path] = {}
    for image in find_images(images_dir):
        if image.stem in images:
            policy.fail(str(image), f"two images share the stem of one label file: "
                                    f"{images[image.stem].name} and {image.name}")
            continue
        images[image.stem] = image
    labels = {p.stem: p for p in sorted(labels_dir.glob("*.txt")) if p.name not in NOT_LABELS}
    for stem, label in labels.items():
        if stem not in images:
            policy.fail(str(label), f"no image for this label file (looked for {stem}"
                                    f"{{{','.join(IMAGE_SUFFIXES)}}} in {images_dir})")
    return [(image, labels.get(stem)) for stem, image in sorted(images.items(),
                                                                  key=lambda kv: kv[1].name)]


def add_yolo_pairs(asm: SourceAssembler, pairs: Sequence[Pair],
                   split_of: Callable[[Path], str | None], names: Sequence[str]) -> None:
    """Register each image and its boxes; ``names[i]`` is the manifest category of class ``i``."""
    for image, label in pairs:
        location = str(label or image)
        key = asm.add_image(relative_posix(image, asm.root), split=split_of(image),
                            location=location)
        if key is None or label is None:
            continue
        width, height = asm.image_size(key)
        for row in read_yolo_txt(label, asm.policy):
            at = where(label, row.line)
            if row.category >= len(names):
                asm.policy.fail(at, f"unknown class id {row.category} ({len(names)} classes: "
                                    f"{', '.join(names)})")
                continue
            asm.add_box(key, row.to_xywh(width, height), names[row.category], location=at)


def add_yolo_split(asm: SourceAssembler, images_dir: Path, labels_dir: Path, split: str | None,
                   names: Sequence[str]) -> None:
    """One split folder pair; an unlabelled split is counted and left out (module docstring)."""
    pairs = yolo_pairs(images_dir, labels_dir, asm.policy)
    if pairs is None:
        asm.counts["dropped_unlabelled_images"] += len(find_images(images_dir))
        return
    add_yolo_pairs(asm, pairs, lambda _: split, names)


def class_names(data_yaml: Path, info: SourceInfo, aliases: Mapping[str, str]) -> list[str]:
    """A Roboflow export's class names (from its ``data.yaml``) as manifest category names.

    ``aliases`` renames a copy's own spelling to the manifest's (e.g. a fork that calls the ball
    ``football``); a name that is still unknown is a clear error rather than a silent remap.
    """
    if not data_yaml.is_file():
        raise SourceError(f"{data_yaml}: data.yaml not found; a Roboflow YOLO export names its "
                          f"classes there")
    names = [aliases.get(n, n) for n in read_class_names(data_yaml)]
    unknown = [n for n in names if n not in info.categories]
    if unknown:
        raise SourceError(f"{data_yaml}: unknown class name(s) {', '.join(map(repr, unknown))} "
                          f"(known: {', '.join(info.categories)}; add an alias in the source "
                          f"module if this copy spells a class differently)")
    return names


def convert_roboflow_yolo(root: Path, info: SourceInfo, policy: ErrorPolicy,
                          aliases: Mapping[str, str]) -> CocoDataset:
    """Read a Roboflow YOLO export: ``data.yaml`` + ``{train,valid,test}/{images,labels}``."""
    asm = SourceAssembler(info, root, policy)
    names = class_names(root / "data.yaml", info, aliases)
    for folder, split in ROBOFLOW_SPLITS.items():
        add_yolo_split(asm, root / folder / "images", root / folder / "labels", split, names)
    return asm.finish()


def write_yolo_image(image_path: Path, label_path: Path | None, rng: np.random.Generator,
                     size: tuple[int, int], n_objects: int, n_classes: int, *,
                     min_size: int = 4, max_size: int = 24, sep: str = " ",
                     extra_lines: Sequence[str] = ()) -> int:
    """Draw a synthetic image and its label file; returns the number of label lines written."""
    width, height = size
    pixels, boxes, labels = scene(rng, width, height, n_objects, n_classes,
                                  min_size=min_size, max_size=max_size)
    save_image(image_path, pixels)
    lines = [format_yolo_row(label, box, width, height, sep=sep)
             for box, label in zip(boxes, labels, strict=True)]
    lines.extend(extra_lines)
    if label_path is not None:
        label_path.parent.mkdir(parents=True, exist_ok=True)
        label_path.write_text("\n".join(lines) + ("\n" if lines else ""))
    return len(lines)


def write_data_yaml(root: Path, names: Sequence[str]) -> None:
    """The ``data.yaml`` of a synthetic Roboflow export."""
    root.mkdir(parents=True, exist_ok=True)
    splits = {"train": "../train/images", "val": "../valid/images", "test": "../test/images"}
    (root / "data.yaml").write_text(format_data_yaml(names, splits))
