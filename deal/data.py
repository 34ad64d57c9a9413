"""Training data for DEAL: COCO images resized by ``input_scale``, random crops, prompt sampling.

Boxes inside this module are float ``xyxy`` pixels of the network input unless stated. Crowd
annotations (``iscrowd: 1``, ignore regions) are neither targets nor prompted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from tinyset_builder.coco import CocoDataset
from tinyset_builder.errors import TinysetError
from tinyset_builder.imageio import read_image


@dataclass
class ImageRecord:
    """One training image: its file and its non-crowd GT in original pixels."""

    image_id: int
    path: Path
    boxes: npt.NDArray[np.float32]     # (G, 4) xyxy, original pixels
    categories: npt.NDArray[np.int64]  # (G,) COCO category ids


@dataclass
class Sample:
    """One network input with its GT, in input pixels.

    Attributes:
        image: ``(H, W, 3)`` uint8.
        boxes: ``(G, 4)`` float32 xyxy.
        categories: ``(G,)`` int64.
    """

    image: npt.NDArray[np.uint8]
    boxes: npt.NDArray[np.float32]
    categories: npt.NDArray[np.int64]


def resolve_image(root: Path, file_name: str, split: str | None = None) -> Path:
    """Find an image named in a COCO file under ``root`` (built datasets and raw sources).

    Tries ``root/file_name``, ``root/images/<split>/file_name`` and ``root/images/file_name``.

    Raises:
        TinysetError: when none exists.
    """
    candidates = [root / file_name]
    if split:
        candidates.append(root / "images" / split / file_name)
    candidates.append(root / "images" / file_name)
    for c in candidates:
        if c.is_file():
            return c
    raise TinysetError(f"{root}: image {file_name!r} not found (tried "
                       f"{', '.join(str(c) for c in candidates)})")


def load_records(coco_json: Path, image_root: Path) -> list[ImageRecord]:
    """Read a COCO file into :class:`ImageRecord` s (crowd boxes dropped)."""
    ds = CocoDataset.load(coco_json)
    by_image: dict[int, list] = {}
    for a in ds.annotations:
        if not a.iscrowd:
            by_image.setdefault(a.image_id, []).append(a)
    records = []
    for img in ds.images:
        anns = by_image.get(img.id, [])
        boxes = np.array([[a.bbox[0], a.bbox[1], a.bbox[0] + a.bbox[2], a.bbox[1] + a.bbox[3]]
                          for a in anns], dtype=np.float32).reshape(-1, 4)
        cats = np.array([a.category_id for a in anns], dtype=np.int64)
        records.append(ImageRecord(img.id, resolve_image(image_root, img.file_name, img.split),
                                   boxes, cats))
    return records


def scale_image(image: npt.NDArray[np.uint8], scale: float) -> npt.NDArray[np.uint8]:
    """Resize ``(H, W, 3)`` by ``scale`` (bilinear; identity for 1.0)."""
    if scale == 1.0:
        return image
    from PIL import Image

    h, w = image.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))


class TrainImages:
    """Scaled images of a COCO file with random square crops (decoded once, kept in memory).

    Args:
        records: from :func:`load_records`.
        scale: ``input_scale`` of the config.
        crop: square crop side after scaling (None = whole image).
    """

    def __init__(self, records: list[ImageRecord], scale: float, crop: int | None) -> None:
        if not records:
            raise TinysetError("DEAL training: the COCO file has no images")
        self.records, self.scale, self.crop = records, scale, crop
        self._cache: dict[int, npt.NDArray[np.uint8]] = {}

    def __len__(self) -> int:
        return len(self.records)

    def image(self, i: int) -> npt.NDArray[np.uint8]:
        """The scaled image ``i`` (cached)."""
        if i not in self._cache:
            self._cache[i] = scale_image(read_image(self.records[i].path), self.scale)
        return self._cache[i]

    def sample(self, i: int, rng: np.random.Generator) -> Sample:
        """Image ``i`` scaled and randomly cropped; boxes kept if their centre is inside."""
        img = self.image(i)
        rec = self.records[i]
        boxes = rec.boxes * self.scale
        h, w = img.shape[:2]
        if self.crop is None:
            return Sample(img, boxes, rec.categories)
        c = self.crop
        # Bias crops towards objects: half the time centre the crop on a random GT box.
        if len(boxes) and rng.random() < 0.5:
            b = boxes[rng.integers(len(boxes))]
            cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
            x0 = int(np.clip(cx - c / 2 + rng.integers(-c // 4, c // 4 + 1), 0, max(w - c, 0)))
            y0 = int(np.clip(cy - c / 2 + rng.integers(-c // 4, c // 4 + 1), 0, max(h - c, 0)))
        else:
            x0 = int(rng.integers(0, max(w - c, 0) + 1))
            y0 = int(rng.integers(0, max(h - c, 0) + 1))
        out = np.zeros((c, c, 3), dtype=np.uint8)
        patch = img[y0:y0 + c, x0:x0 + c]
        out[:patch.shape[0], :patch.shape[1]] = patch
        shifted = boxes - np.array([x0, y0, x0, y0], dtype=np.float32)
        ctr = (shifted[:, :2] + shifted[:, 2:]) / 2
        keep = ((ctr[:, 0] >= 0) & (ctr[:, 0] < patch.shape[1]) & (ctr[:, 1] >= 0)
                & (ctr[:, 1] < patch.shape[0]))
        shifted = shifted[keep]
        shifted[:, [0, 2]] = shifted[:, [0, 2]].clip(0, patch.shape[1])
        shifted[:, [1, 3]] = shifted[:, [1, 3]].clip(0, patch.shape[0])
        return Sample(out, shifted.astype(np.float32), rec.categories[keep])


def point_in_box(box: npt.NDArray[np.float32], rng: np.random.Generator,
                 spread: float = 0.5) -> npt.NDArray[np.float32]:
    """A uniform random point in an xyxy box (Algorithm 1: "from a GT box").

    ``spread`` is the fraction of the box's half-extent around the centre the point may take:
    0.5 = the central half (ours), 1.0 = anywhere in the box (the paper's "interior").
    """
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    hw, hh = spread * (box[2] - box[0]) / 2, spread * (box[3] - box[1]) / 2
    return np.array([cx + rng.uniform(-hw, hw), cy + rng.uniform(-hh, hh)], dtype=np.float32)


def box_centre(box: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Centre of an xyxy box."""
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2], dtype=np.float32)


@dataclass
class PromptSet:
    """One prompt set during training.

    Attributes:
        points: ``(K, 2)`` float32 input pixels (all foreground).
        target_idx: indices (into the sample's GT) of the boxes this set must detect.
        prompted_idx: indices of the GT instances that already carry a point.
    """

    points: npt.NDArray[np.float32]
    target_idx: npt.NDArray[np.int64]
    prompted_idx: list[int]


def initial_prompts(sample: Sample, mode: str, rng: np.random.Generator,
                    spread: float = 0.5) -> PromptSet:
    """Initial prompt set of Algorithm 1.

    Args:
        sample: the image and its GT.
        mode: ``"intra"`` (one category, one point on one of its instances), ``"inter"`` (one
            point on one instance of every category present) or ``"none"`` (no prompt, every GT
            is a target: the base detector).
        rng: random generator.
        spread: where in the box the point falls (:func:`point_in_box`).
    """
    n = len(sample.boxes)
    if mode == "none" or n == 0:
        return PromptSet(np.zeros((0, 2), np.float32), np.arange(n), [])
    cats = np.unique(sample.categories)
    chosen = [int(rng.choice(cats))] if mode == "intra" else [int(c) for c in cats]
    points, prompted = [], []
    for c in chosen:
        members = np.flatnonzero(sample.categories == c)
        j = int(rng.choice(members))
        points.append(point_in_box(sample.boxes[j], rng, spread))
        prompted.append(j)
    target = np.flatnonzero(np.isin(sample.categories, chosen))
    return PromptSet(np.stack(points).astype(np.float32), target, prompted)


def intra_class_sets(sample: Sample, rng: np.random.Generator, max_sets: int,
                     spread: float = 0.5) -> list[PromptSet]:
    """Algorithm 1's intra-class cycle: one prompt set per category present in the image.

    Each set starts from one point on one instance of its category and targets that category's
    boxes only, so every category of the image teaches the model to separate it from the others
    (one random category per image would leave most images without that signal). At most
    ``max_sets`` categories are drawn, in random order; an image without GT gives one empty set.
    """
    cats = np.unique(sample.categories)
    if len(cats) == 0:
        return [initial_prompts(sample, "intra", rng, spread)]
    chosen = rng.permutation(cats)[:max(max_sets, 1)]
    sets = []
    for c in chosen.tolist():
        members = np.flatnonzero(sample.categories == c)
        j = int(rng.choice(members))
        point = point_in_box(sample.boxes[j], rng, spread)[None].astype(np.float32)
        sets.append(PromptSet(point, members, [j]))
    return sets


def add_prompt(ps: PromptSet, sample: Sample, gt_index: int,
               point: npt.NDArray[np.float32] | None = None) -> PromptSet:
    """``P ∪ {Center(b*)}``: add ``point`` (default: the centre of GT ``gt_index``) to the set.

    ``gt_index`` is recorded as prompted either way, so it is not chosen again.
    """
    p = box_centre(sample.boxes[gt_index]) if point is None else np.asarray(point, np.float32)
    pts = np.concatenate([ps.points, p.reshape(1, 2)], 0)
    return PromptSet(pts.astype(np.float32), ps.target_idx, [*ps.prompted_idx, gt_index])
