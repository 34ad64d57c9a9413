"""COCO files → training samples, image tensors and CPU-sized random crops.

Light at import (no torch): the adapters use :func:`image_path` and :func:`category_map` to plan and
export without a framework.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from tinyset_builder.errors import TinysetError
from tinyset_builder.io import read_json


@dataclass(frozen=True, slots=True)
class Sample:
    """One image: its path and absolute ``[x0, y0, x1, y1]`` boxes with 1-based class labels.

    ``clean``: the true boxes behind ``boxes`` (row for row) when the file is a noisy-box variant
    (annotations with ``clean_bbox``), for measuring how far a method's boxes are from the truth.
    """

    image_id: int
    path: Path
    boxes: npt.NDArray[np.float32]
    labels: npt.NDArray[np.int64]
    clean: npt.NDArray[np.float32] | None = None


def image_path(data_dir: Path, file_name: str, split: str | None) -> Path:
    """Locate an image of a built dataset: ``images/<file_name>`` or ``images/<split>/<file_name>``.

    Raises:
        TinysetError: neither exists (names both candidates).
    """
    first = data_dir / "images" / file_name
    if first.is_file():
        return first
    if split:
        second = data_dir / "images" / split / file_name
        if second.is_file():
            return second
    raise TinysetError(f"{data_dir}: image {file_name!r} not found under images/"
                       f"{'' if not split else f' or images/{split}/'}")


def category_map(coco: Mapping[str, Any], class_agnostic: bool) -> dict[int, int]:
    """COCO category id -> contiguous model label (1..K; background is 0 in torchvision)."""
    ids = sorted(int(c["id"]) for c in coco.get("categories", []))
    if class_agnostic:
        return dict.fromkeys(ids, 1)
    return {cid: i + 1 for i, cid in enumerate(ids)}


def load_samples(coco_json: Path, data_dir: Path, class_agnostic: bool = True,
                 ) -> tuple[list[Sample], dict[str, int]]:
    """Read a COCO file into :class:`Sample` s (crowd regions left out); return counts too.

    Boxes are converted from ``[x, y, w, h]`` to absolute ``[x0, y0, x1, y1]``; boxes without
    area (e.g. points) are skipped and counted, since a detector cannot regress them.
    """
    coco = read_json(coco_json)
    cmap = category_map(coco, class_agnostic)
    by_image: dict[int, list[Mapping[str, Any]]] = {}
    for a in coco.get("annotations", []):
        by_image.setdefault(int(a["image_id"]), []).append(a)
    split_hint = coco_json.stem if coco_json.stem in ("train", "val", "test") else None
    counts = {"images": 0, "boxes": 0, "crowd_skipped": 0, "degenerate_skipped": 0}
    samples = []
    for img in coco.get("images", []):
        split = img.get("split") or split_hint or "train"
        boxes, labels, clean = [], [], []
        for a in by_image.get(int(img["id"]), []):
            if a.get("iscrowd", 0):
                counts["crowd_skipped"] += 1
                continue
            x, y, w, h = (float(v) for v in a["bbox"])
            if w <= 0 or h <= 0:
                counts["degenerate_skipped"] += 1
                continue
            if int(a["category_id"]) not in cmap:
                raise TinysetError(f"{coco_json}: annotation {a.get('id')} has unknown "
                                   f"category_id {a['category_id']}")
            boxes.append((x, y, x + w, y + h))
            labels.append(cmap[int(a["category_id"])])
            if "clean_bbox" in a:
                cx, cy, cw, ch = (float(v) for v in a["clean_bbox"])
                clean.append((cx, cy, cx + cw, cy + ch))
        samples.append(Sample(int(img["id"]), image_path(data_dir, img["file_name"], split),
                              np.asarray(boxes, np.float32).reshape(-1, 4),
                              np.asarray(labels, np.int64),
                              np.asarray(clean, np.float32).reshape(-1, 4)
                              if boxes and len(clean) == len(boxes) else None))
        counts["images"] += 1
        counts["boxes"] += len(boxes)
    return samples, counts


def file_digest(path: Path) -> str:
    """Short content hash of a file (decides whether a trained model can be reused)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def read_tensor(path: Path) -> Any:
    """An image as a ``(3, H, W)`` float tensor in [0, 1]."""
    import torch

    from tinyset_builder.imageio import read_image

    pixels = read_image(path)
    return torch.from_numpy(np.array(pixels, copy=True)).permute(2, 0, 1).float().div_(255.0)


def crop_window(height: int, width: int, boxes: npt.NDArray[np.float32], size: int,
                rng: np.random.Generator, object_bias: float = 0.5) -> tuple[int, int]:
    """Top-left corner of a ``size × size`` training crop inside an ``height × width`` image.

    With probability ``object_bias`` (when the image has objects) the crop is placed so that a
    randomly chosen object lies inside it at a random position; otherwise uniformly. Tiny objects
    are sparse in a 1024² tile: uniform 256² crops would often hold none, wasting a CPU budget.
    """
    max_y, max_x = max(height - size, 0), max(width - size, 0)
    if len(boxes) and rng.random() < object_bias:
        x0, y0, x1, y1 = boxes[int(rng.integers(len(boxes)))].tolist()
        lo_x, hi_x = max(0.0, x1 - size), min(float(max_x), x0)
        lo_y, hi_y = max(0.0, y1 - size), min(float(max_y), y0)
        if lo_x <= hi_x and lo_y <= hi_y:
            return (int(rng.uniform(lo_y, hi_y + 1e-9)), int(rng.uniform(lo_x, hi_x + 1e-9)))
    return int(rng.integers(max_y + 1)), int(rng.integers(max_x + 1))


def crop_boxes(boxes: npt.NDArray[np.float32], labels: npt.NDArray[np.int64], top: int,
               left: int, size: int, min_visible: float = 0.5,
               ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """Boxes of a crop: shifted, clipped, keeping those with ≥ ``min_visible`` of their area.

    Returns the kept boxes, their labels and the boolean mask of kept input boxes (so callers can
    carry per-box extras, e.g. teacher scores, through the crop).
    """
    if not len(boxes):
        return boxes.reshape(0, 4), labels, np.zeros(0, bool)
    shifted = boxes - np.array([left, top, left, top], np.float32)
    clipped = np.clip(shifted, 0, size)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    kept_area = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
    keep = (kept_area > 0) & (kept_area >= min_visible * np.maximum(area, 1e-9))
    return clipped[keep], labels[keep], keep


def crop_patch(image: Any, boxes: npt.NDArray[np.float32], labels: npt.NDArray[np.int64],
               size: int, rng: np.random.Generator, object_bias: float = 0.5,
               ) -> tuple[Any, npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """A ``size × size`` crop of ``image`` (a ``(3, H, W)`` tensor) placed by
    :func:`crop_window` from ``boxes`` (none: uniform), with the boxes and labels it keeps.

    Images smaller than ``size`` are zero-padded at the bottom/right, as the build pads tiles.
    """
    patch, top, left = _crop_image(image, boxes, size, rng, object_bias)
    kept_boxes, kept_labels, _ = crop_boxes(boxes, labels, top, left, size)
    return patch, kept_boxes, kept_labels


def _crop_image(image: Any, boxes: npt.NDArray[np.float32], size: int,
                rng: np.random.Generator, object_bias: float) -> tuple[Any, int, int]:
    """The zero-padded ``size × size`` patch of :func:`crop_patch` and its top-left corner."""
    _, h, w = image.shape
    top, left = crop_window(h, w, boxes, size, rng, object_bias)
    patch = image[:, top:top + size, left:left + size]
    if patch.shape[1:] != (size, size):
        padded = patch.new_zeros((3, size, size))
        padded[:, :patch.shape[1], :patch.shape[2]] = patch
        patch = padded
    return patch, top, left


def random_crop(image: Any, sample: Sample, size: int, rng: np.random.Generator,
                object_bias: float = 0.5, clean: bool = False) -> tuple[Any, dict[str, Any]]:
    """:func:`crop_patch` of a labelled sample, with its torchvision target.

    ``clean``: the target also carries ``clean_boxes``, the sample's clean boxes of the kept
    boxes, shifted and clipped to the crop (when the sample has them).
    """
    import torch

    patch, top, left = _crop_image(image, sample.boxes, size, rng, object_bias)
    boxes, labels, keep = crop_boxes(sample.boxes, sample.labels, top, left, size)
    target = {"boxes": torch.from_numpy(np.ascontiguousarray(boxes)),
              "labels": torch.from_numpy(np.ascontiguousarray(labels))}
    if clean and sample.clean is not None:
        shifted = sample.clean[keep] - np.array([left, top, left, top], np.float32)
        target["clean_boxes"] = torch.from_numpy(np.clip(shifted, 0, size))
    return patch, target


def batch_indices(n: int, iteration: int, batch_size: int, seed: int) -> list[int]:
    """Image indices of one step: consecutive slices of a fresh seeded permutation per epoch.

    A pure function of its arguments, so a run of unknown length (a ``cpu`` budget) or a resumed
    run draws exactly the images the uninterrupted run draws.
    """
    out = []
    for k in range(iteration * batch_size, (iteration + 1) * batch_size):
        epoch, pos = divmod(k, n)
        out.append(int(np.random.default_rng([seed, epoch]).permutation(n)[pos]))
    return out


def step_rng(seed: int, iteration: int, stream: int = 0) -> np.random.Generator:
    """The random generator of one training step: a pure function of (seed, iteration, stream),
    so a run resumed at any iteration draws exactly what the uninterrupted run drew."""
    return np.random.default_rng([seed, iteration, stream])



def training_batch(samples: list[Sample], iteration: int, *, batch_size: int, crop: int | None,
                   seed: int, device: Any = "cpu", augment: str = "none", clean: bool = False,
                   ) -> tuple[list[Any], list[dict[str, Any]]]:
    """Images and torchvision targets of one supervised step (crops when ``crop`` is set).

    ``augment``: ``none``, or ``flip_colour`` — a horizontal flip with probability 0.5, then
    one colour operation (:func:`baselines.augment.colour`): the labelled branch of the
    teacher–student methods (:func:`baselines.teacher.labeled_view`) and the supervised baseline
    of Soft Teacher's authors (microsoft/SoftTeacher@ba4b1ab ``configs/baseline/base.py``), so
    a baseline compared with those methods can see the same supervised views.

    ``clean``: targets also carry ``clean_boxes`` (:func:`random_crop`) when the samples have them.
    """
    import torch

    from baselines.augment import colour, hflip

    rng = step_rng(seed, iteration)
    images, targets = [], []
    for i in batch_indices(len(samples), iteration, batch_size, seed):
        s = samples[i]
        image = read_tensor(s.path)
        if crop is None:
            target = {"boxes": torch.from_numpy(s.boxes), "labels": torch.from_numpy(s.labels)}
            if clean and s.clean is not None:
                target["clean_boxes"] = torch.from_numpy(s.clean)
        else:
            image, target = random_crop(image, s, crop, rng, clean=clean)
        if augment == "flip_colour":
            if rng.random() < 0.5:   # one flip of the image for the boxes and the clean boxes
                keys = [k for k in ("boxes", "clean_boxes") if k in target]
                image, flipped = hflip(image, torch.cat([target[k] for k in keys]))
                for k, part in zip(keys, flipped.split([len(target[k]) for k in keys]),
                                   strict=True):
                    target[k] = part
            image = colour(image, rng)
        images.append(image.to(device))
        targets.append({k: v.to(device) for k, v in target.items()})
    return images, targets
