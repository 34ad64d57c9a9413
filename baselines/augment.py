"""Weak and strong views for teacher–student training, with torchvision transforms v2 on boxes.

The views follow the Soft Teacher / PseCo pipelines (microsoft/SoftTeacher@0423bb2,
``configs/soft_teacher/base.py``; ligang-cs/PseCo@33b06ee, ``configs/PseCo/base.py``), adapted to
the fixed-size training crops of :mod:`baselines.schedules`:

* **weak** (the teacher's): the crop, then a horizontal flip with probability 0.5;
* **strong** (the student's): the weak view, then an affine map — a random *scale* (the papers'
  independent random resize of teacher and student, 400–1200 px short side = 0.5–1.5×, kept on the
  crop's canvas because the detectors' transform resizes every input to one size) combined with
  one of translate-x, translate-y (±10 %), rotate (±30°) or shear in x and y (±30°) — then one
  colour operation (identity, autocontrast, equalize, solarize, colour, contrast, brightness,
  sharpness, posterize) and 1–5 erased squares of up to 20 % of the side;
* **labelled** (the supervised branch): the weak view plus one colour operation.

Boxes travel through :func:`torchvision.transforms.v2.functional.affine` as
:class:`~torchvision.tv_tensors.BoundingBoxes`; a view keeps its 3×3 matrix so that student boxes
can be mapped back to the teacher's frame (Soft Teacher scores the student's proposals with the
teacher). Every random draw comes from a :class:`numpy.random.Generator` the caller passes (the
training step's :func:`baselines.data.step_rng`), so a view is a pure function of seed and step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

#: The colour operations of the papers' RandAugment list (one is drawn per view).
COLOUR_OPS = ("identity", "autocontrast", "equalize", "solarize", "color", "contrast",
              "brightness", "sharpness", "posterize")
#: The geometric operations of the strong view (one is drawn per view).
GEOMETRIC_OPS = ("translate_x", "translate_y", "rotate", "shear")


@dataclass(frozen=True, slots=True)
class AffineParams:
    """Parameters of one v2 affine map on a ``size × size`` canvas (degrees and pixels)."""

    angle: float = 0.0
    translate: tuple[float, float] = (0.0, 0.0)
    scale: float = 1.0
    shear: tuple[float, float] = (0.0, 0.0)

    def matrix(self, size: int) -> np.ndarray:
        """The forward 3×3 matrix v2 applies to points (centre of the canvas as origin)."""
        from torchvision.transforms.functional import _get_inverse_affine_matrix

        m = _get_inverse_affine_matrix([size * 0.5, size * 0.5], self.angle,
                                       list(self.translate), self.scale, list(self.shear),
                                       inverted=False)
        return np.array([m[0:3], m[3:6], [0.0, 0.0, 1.0]], np.float64)


def draw_affine(rng: np.random.Generator, size: int, scale_range: tuple[float, float],
                geometric: bool = True) -> AffineParams:
    """A random scale in ``scale_range`` and (``geometric``) one of :data:`GEOMETRIC_OPS`."""
    scale = float(rng.uniform(*scale_range))
    if not geometric:
        return AffineParams(scale=scale)
    op = GEOMETRIC_OPS[int(rng.integers(len(GEOMETRIC_OPS)))]
    if op == "translate_x":
        return AffineParams(translate=(float(rng.uniform(-0.1, 0.1)) * size, 0.0), scale=scale)
    if op == "translate_y":
        return AffineParams(translate=(0.0, float(rng.uniform(-0.1, 0.1)) * size), scale=scale)
    if op == "rotate":
        return AffineParams(angle=float(rng.uniform(-30, 30)), scale=scale)
    return AffineParams(scale=scale, shear=(float(rng.uniform(-30, 30)),
                                            float(rng.uniform(-30, 30))))


def affine_boxes(boxes: Any, params: AffineParams, size: int, min_side: float = 1.0,
                 ) -> tuple[Any, Any]:
    """Boxes (``N×4`` xyxy tensor) through the affine map with v2; returns boxes and kept mask.

    v2 maps the four corners and takes their enclosing box, clamped to the canvas; boxes left with
    a side under ``min_side`` pixels (pushed off the canvas) are dropped.
    """
    import torch
    from torchvision import tv_tensors
    from torchvision.transforms.v2 import functional as F

    if not len(boxes):
        return boxes.reshape(0, 4), torch.zeros(0, dtype=torch.bool)
    bb = tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(size, size))
    out = F.affine(bb, angle=params.angle, translate=list(params.translate), scale=params.scale,
                   shear=list(params.shear)).as_subclass(torch.Tensor)
    keep = ((out[:, 2] - out[:, 0]) >= min_side) & ((out[:, 3] - out[:, 1]) >= min_side)
    return out[keep], keep


def map_boxes(boxes: Any, matrix: np.ndarray, size: int) -> Any:
    """Boxes through a 3×3 matrix (corners → enclosing box, clamped), e.g. an inverse map."""
    import torch

    if not len(boxes):
        return boxes.reshape(0, 4)
    m = torch.as_tensor(matrix, dtype=boxes.dtype, device=boxes.device)
    corners = boxes[:, [0, 1, 2, 1, 2, 3, 0, 3]].reshape(-1, 4, 2)
    pts = corners @ m[:2, :2].T + m[:2, 2]
    out = torch.cat([pts.min(dim=1).values, pts.max(dim=1).values], dim=1)
    return out.clamp(0, size)


def colour(image: Any, rng: np.random.Generator) -> Any:
    """One of :data:`COLOUR_OPS` with a random magnitude (image: float ``3×H×W`` in [0, 1])."""
    import torch
    from torchvision.transforms.v2 import functional as F

    op = COLOUR_OPS[int(rng.integers(len(COLOUR_OPS)))]
    factor = float(rng.uniform(0.1, 1.9))  # PIL ImageEnhance range of RandAugment
    if op == "identity":
        return image
    if op == "autocontrast":
        return F.autocontrast(image)
    if op in ("equalize", "posterize"):
        as_uint8 = (image * 255).round().to(torch.uint8)
        out = (F.equalize(as_uint8) if op == "equalize"
               else F.posterize(as_uint8, int(rng.integers(4, 9))))
        return out.float().div_(255.0)
    if op == "solarize":
        return F.solarize(image, float(rng.uniform(0.0, 1.0)))
    if op == "color":
        return F.adjust_saturation(image, factor)
    if op == "contrast":
        return F.adjust_contrast(image, factor)
    if op == "brightness":
        return F.adjust_brightness(image, factor).clamp_(0, 1)
    return F.adjust_sharpness(image, factor)


def erase(image: Any, rng: np.random.Generator, max_fraction: float = 0.2) -> Any:
    """1–5 squares of side up to ``max_fraction`` of the image, filled with zeros (v2 erase)."""
    from torchvision.transforms.v2 import functional as F

    _, h, w = image.shape
    for _ in range(int(rng.integers(1, 6))):
        side = int(rng.uniform(0, max_fraction) * min(h, w))
        if side < 1:
            continue
        top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        image = F.erase(image, top, left, side, side, v=image.new_zeros(1))
    return image


def hflip(image: Any, boxes: Any) -> tuple[Any, Any]:
    """Horizontal flip of an image and its boxes with v2."""
    import torch
    from torchvision import tv_tensors
    from torchvision.transforms.v2 import functional as F

    _, h, w = image.shape
    bb = tv_tensors.BoundingBoxes(boxes.reshape(-1, 4), format="XYXY", canvas_size=(h, w))
    return F.horizontal_flip(image), F.horizontal_flip(bb).as_subclass(torch.Tensor)


@dataclass
class StrongView:
    """The student's view of a weak view: its image, the affine it went through, its boxes."""

    image: Any
    params: AffineParams
    size: int

    def to_student(self, boxes: Any) -> tuple[Any, Any]:
        """Teacher-frame boxes in the student's frame (v2) and the mask of boxes kept."""
        return affine_boxes(boxes, self.params, self.size)

    def to_teacher(self, boxes: Any) -> Any:
        """Student-frame boxes in the teacher's frame (the inverse map)."""
        return map_boxes(boxes, np.linalg.inv(self.params.matrix(self.size)), self.size)


def strong_view(weak: Any, rng: np.random.Generator, scale_range: tuple[float, float] = (0.5, 1.5),
                geometric: bool = True, photometric: bool = True) -> StrongView:
    """The student's strong view of the teacher's weak view (see the module docstring)."""
    from torchvision.transforms.v2 import functional as F

    size = int(weak.shape[-1])
    params = draw_affine(rng, size, scale_range, geometric)
    image = F.affine(weak, angle=params.angle, translate=list(params.translate),
                     scale=params.scale, shear=list(params.shear))
    if photometric:
        image = erase(colour(image, rng), rng)
    return StrongView(image, params, size)


def colour_jitter(image: Any, rng: np.random.Generator, strength: float = 1.0,
                  p: float = 0.8) -> Any:
    """SimCLR colour jitter (brightness, contrast, saturation 0.8·s, hue 0.2·s) with prob. ``p``.

    Co-mining's second view (megvii-research/Co-mining@624df6d, ``coco.py``: ``ColorJitter`` in a
    ``RandomApply`` of p = 0.8, s = 1); the four factors are applied in a random order.
    """
    from torchvision.transforms.v2 import functional as F

    if rng.random() >= p:
        return image
    s = strength
    ops = {"brightness": lambda im: F.adjust_brightness(
               im, float(rng.uniform(max(0, 1 - 0.8 * s), 1 + 0.8 * s))).clamp_(0, 1),
           "contrast": lambda im: F.adjust_contrast(
               im, float(rng.uniform(max(0, 1 - 0.8 * s), 1 + 0.8 * s))),
           "saturation": lambda im: F.adjust_saturation(
               im, float(rng.uniform(max(0, 1 - 0.8 * s), 1 + 0.8 * s))),
           "hue": lambda im: F.adjust_hue(im, float(rng.uniform(-0.2 * s, 0.2 * s)))}
    for name in rng.permutation(list(ops)):
        image = ops[str(name)](image)
    return image
