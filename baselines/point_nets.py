"""Torch pieces shared by the point-supervised methods, and their common two-phase pipeline.

Every point method here follows the authors' *two-stage* recipe: a **pseudo-box generator** is
trained from the points (method-specific: MIL over proposal bags, a class probability map, a dense
head with progressive assignment, ...), turns every training point into a pseudo box, and a plain
torchvision detector (:mod:`baselines.supervised`) is then trained on those boxes. Both phases
run through the one training loop :func:`baselines.train.fit` (checkpoints ``generator_ckpt.pt``
and ``checkpoint.pt``); under the ``cpu`` schedule the budget is split between them by
``generator_share`` (default 0.5; :func:`baselines.teacher.split_plan`), so a method and its
supervised baseline spend the same compute.

The generator sees exactly what the detector would: the plan's crops (``cpu``: 256² random crops
placed on objects, ``smoke``: whole tiles resized), the same ResNet-FPN backbone; pseudo boxes are
produced on whole tiles at the plan's test size and mapped back to tile pixels. Torch is imported
inside functions only.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from baselines.data import (
    Sample,
    batch_indices,
    crop_boxes,
    crop_window,
    file_digest,
    read_tensor,
    step_rng,
)
from baselines.points import PointSample, load_point_samples, pseudo_quality, rbox_polygons
from baselines.schedules import TrainPlan
from tinyset_builder.errors import TinysetError

GENERATOR = "generator.pt"
PSEUDO = "pseudo_boxes.json"
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass
class PointBatch:
    """One generator step: images ``(B, 3, S, S)``, points per image (pixels of the input),
    the input/tile scale per image, per-point nearest-neighbour distance (input pixels) and
    each tile's shorter side (tile pixels)."""

    images: Any
    points: list[np.ndarray]
    scales: list[float]
    nn_dist: list[np.ndarray]
    indices: list[int]
    tiles: list[float]


def input_scale(plan: TrainPlan, height: int, width: int) -> float:
    """Input pixels per tile pixel: 1 with crops, ``test_size / side`` for whole resized tiles."""
    return 1.0 if plan.crop is not None else plan.test_size / max(height, width)


def resize_image(image: Any, scale: float) -> Any:
    """Bilinear resize of a ``(3, H, W)`` tensor by ``scale`` (no-op at 1)."""
    import torch.nn.functional as F

    if scale == 1.0:
        return image
    h, w = image.shape[1:]
    return F.interpolate(image[None], size=(max(1, round(h * scale)), max(1, round(w * scale))),
                         mode="bilinear", align_corners=False)[0]


def pad_square(image: Any, size: int) -> Any:
    """Zero-pad a ``(3, h, w)`` tensor to ``size × size`` at the bottom/right."""
    if image.shape[1:] == (size, size):
        return image
    out = image.new_zeros((3, size, size))
    out[:, :image.shape[1], :image.shape[2]] = image[:, :size, :size]
    return out


def point_batch(samples: list[PointSample], it: int, plan: TrainPlan, seed: int,
                nn_all: list[np.ndarray], device: str = "cpu") -> PointBatch:
    """The images and points of generator step ``it`` (a pure function of seed and ``it``)."""
    import torch

    from baselines.points import point_bags

    rng = step_rng(seed, it, 7)
    idx = batch_indices(len(samples), it, plan.batch_size, seed)
    images, points, scales, nns, tiles = [], [], [], [], []
    for i in idx:
        s = samples[i]
        image = read_tensor(s.path)
        _, h, w = image.shape
        if plan.crop is None:
            sc = input_scale(plan, h, w)
            image = pad_square(resize_image(image, sc), plan.test_size)
            pts, nn = s.points * sc, nn_all[i] * sc
        else:
            sc, size = 1.0, plan.crop
            tiny = point_bags(s.points, [1.0], [1.0]).reshape(-1, 4)
            top, left = crop_window(h, w, tiny, size, rng)
            _, _, keep = crop_boxes(tiny, np.zeros(len(tiny), np.int64), top, left, size)
            image = pad_square(image[:, top:top + size, left:left + size], size)
            pts = s.points[keep] - np.array([left, top], np.float32)
            nn = nn_all[i][keep]
        images.append(image)
        points.append(np.asarray(pts, np.float32).reshape(-1, 2))
        scales.append(sc)
        nns.append(np.asarray(nn, np.float32))
        tiles.append(float(min(h, w)))
    return PointBatch(torch.stack(images).to(device), points, scales, nns, idx, tiles)


def build_point_net(plan: TrainPlan, *, mil_heads: int = 0, angle: bool = False,
                    dense_levels: int = 0, dense_outputs: int = 1) -> Any:
    """ResNet-FPN (the plan's backbone) with optional MIL heads and dense per-level heads.

    * ``mil_heads``: that many independent RoI heads (RoI-Align 7×7 on P2–P5 → 2 FC) each with a
      class logit, an instance logit and (``angle``) a ``(cos 2θ, sin 2θ)`` output;
    * ``dense_levels``: conv heads on P2… (``dense_outputs`` channels each).
    """
    import torch
    from torch import nn
    from torchvision.ops import MultiScaleRoIAlign

    from baselines.detectors import build_backbone
    from baselines.supervised import detector_spec

    spec = detector_spec(plan, "faster_rcnn", 1)
    c = plan.fpn_channels

    class _Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = build_backbone(spec, "maxpool")
            self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1), persistent=False)
            self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1), persistent=False)
            self.roi = MultiScaleRoIAlign(["0", "1", "2", "3"], 7, 2)
            self.mil = nn.ModuleList(
                nn.ModuleDict({"fc": nn.Sequential(nn.Flatten(), nn.Linear(c * 49, 256), nn.ReLU(),
                                                   nn.Linear(256, 256), nn.ReLU()),
                               "cls": nn.Linear(256, 1), "ins": nn.Linear(256, 1),
                               **({"angle": nn.Linear(256, 2)} if angle else {})})
                for _ in range(mil_heads))
            self.dense = nn.ModuleList(
                nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU(),
                              nn.Conv2d(c, dense_outputs, 1)) for _ in range(dense_levels))
            for head in self.dense:  # focal-loss prior: start at ~1 % foreground
                nn.init.constant_(head[-1].bias, 0.0)
                with torch.no_grad():
                    head[-1].bias[0] = -4.6

        def features(self, images: Any) -> Any:
            return self.backbone((images - self.mean) / self.std)

        def mil_forward(self, head: int, feats: Any, boxes: list[Any], size: int,
                        ) -> dict[str, Any]:
            shapes = [(size, size)] * len(boxes)
            x = self.mil[head]["fc"](self.roi(feats, boxes, shapes))
            out = {"cls": self.mil[head]["cls"](x)[:, 0], "ins": self.mil[head]["ins"](x)[:, 0]}
            if "angle" in self.mil[head]:
                out["angle"] = self.mil[head]["angle"](x)
            return out

        def dense_forward(self, feats: Any) -> list[Any]:
            keys = ["0", "1", "2", "3"]
            return [h(feats[k]) for h, k in zip(self.dense, keys, strict=False)]

    return _Net()


# --------------------------------------------------------------------------------------------
# Losses shared by the MIL methods
# --------------------------------------------------------------------------------------------

def mil_bag_loss(cls: Any, ins: Any, n_bags: int, per_bag: int) -> Any:
    """P2BNet's MIL loss: bag score ``Σ_j softmax_j(ins) · sigmoid(cls_j)`` → BCE with target 1."""
    import torch
    import torch.nn.functional as F

    if n_bags == 0:
        return cls.sum() * 0.0
    c = torch.sigmoid(cls.view(n_bags, per_bag))
    w = torch.softmax(ins.view(n_bags, per_bag), dim=1)
    score = (c * w).sum(dim=1).clamp(1e-6, 1 - 1e-6)
    return F.binary_cross_entropy(score, torch.ones_like(score))


def negative_loss(cls: Any) -> Any:
    """Focal loss (γ 2, α 0.25) pushing background proposals' class score to 0."""
    from torchvision.ops import sigmoid_focal_loss

    if cls.numel() == 0:
        return cls.sum() * 0.0
    return sigmoid_focal_loss(cls, cls.new_zeros(cls.shape), reduction="mean")


def random_negatives(bags: np.ndarray, size: int, n: int, rng: np.random.Generator,
                     iou_thr: float = 0.3) -> np.ndarray:
    """Random boxes in the input that overlap no bag proposal by IoU ≥ ``iou_thr`` (P2BNet's)."""
    import torch
    from torchvision.ops import box_iou

    x0 = rng.uniform(-0.2 * size, size, n)
    y0 = rng.uniform(-0.2 * size, size, n)
    x1 = x0 + rng.uniform(0, 1, n) * (1.2 * size - x0)
    y1 = y0 + rng.uniform(0, 1, n) * (1.2 * size - y0)
    neg = np.stack([x0, y0, np.maximum(x1, x0 + 2), np.maximum(y1, y0 + 2)], 1).astype(np.float32)
    neg = np.clip(neg, 0, size)
    neg = neg[(neg[:, 2] - neg[:, 0] >= 1) & (neg[:, 3] - neg[:, 1] >= 1)]
    if len(bags) and len(neg):
        iou = box_iou(torch.from_numpy(neg), torch.from_numpy(bags.reshape(-1, 4))).numpy()
        neg = neg[iou.max(axis=1) < iou_thr]
    return neg


def cut_symmetric(bags: np.ndarray, points: np.ndarray, size: int) -> np.ndarray:
    """P2BNet's ``symmetry`` cut: shrink each proposal about its point to stay inside the input."""
    p = points.reshape(-1, 1, 2)
    w = np.minimum(bags[..., 2] - bags[..., 0], 2 * np.minimum(p[..., 0], size - p[..., 0]))
    h = np.minimum(bags[..., 3] - bags[..., 1], 2 * np.minimum(p[..., 1], size - p[..., 1]))
    w, h = np.maximum(w, 1.0), np.maximum(h, 1.0)
    return np.stack([p[..., 0] - w / 2, p[..., 1] - h / 2, p[..., 0] + w / 2, p[..., 1] + h / 2],
                    -1).astype(np.float32)


# --------------------------------------------------------------------------------------------
# The two-phase pipeline
# --------------------------------------------------------------------------------------------

PseudoFn = Callable[[Any, Any, np.ndarray, float, int], tuple[np.ndarray, np.ndarray | None]]


def generate_pseudo(net: Any, samples: list[PointSample], plan: TrainPlan, pseudo: PseudoFn,
                    device: str) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
    """Pseudo boxes (tile pixels, xyxy) and rotated boxes (or None) for every training point."""
    import torch

    from tinyset_builder.progress import track

    net.eval()
    boxes, rboxes = [], []
    with torch.inference_mode():
        for s in track(samples, f"pseudo boxes for {len(samples)} images"):
            image = read_tensor(s.path)
            _, h, w = image.shape
            if not len(s.points):
                boxes.append(np.zeros((0, 4), np.float32))
                rboxes.append(None)
                continue
            sc = input_scale(plan, h, w) if plan.crop is None else 1.0
            size = round(max(h, w) * sc)
            x = pad_square(resize_image(image, sc), size)[None].to(device)
            hb, rb = pseudo(net, x, s.points * sc, sc, size)
            hb = np.asarray(hb, np.float32) / sc
            hb[:, [0, 2]] = np.clip(hb[:, [0, 2]], 0, w)
            hb[:, [1, 3]] = np.clip(hb[:, [1, 3]], 0, h)
            # a pseudo box never collapses below one pixel: the detector needs an area
            c = (hb[:, :2] + hb[:, 2:]) / 2
            half = np.maximum(hb[:, 2:] - hb[:, :2], 1.0) / 2
            boxes.append(np.concatenate([c - half, c + half], 1).astype(np.float32))
            if rb is not None:
                rb = np.asarray(rb, np.float32).copy()
                rb[:, :4] /= sc
            rboxes.append(rb)
    return boxes, rboxes


def write_pseudo(path: Path, samples: list[PointSample], boxes: list[np.ndarray],
                 rboxes: list[np.ndarray | None]) -> None:
    """The pseudo labels as a small JSON side file (horizontal box, and rotated box + polygon)."""
    from tinyset_builder.io import write_json

    out = []
    for s, b, r in zip(samples, boxes, rboxes, strict=True):
        polys = rbox_polygons(r).reshape(-1, 8) if r is not None else None
        for k in range(len(b)):
            row: dict[str, Any] = {"image_id": s.image_id,
                                   "point": [round(float(v), 2) for v in s.points[k]],
                                   "bbox_xyxy": [round(float(v), 2) for v in b[k]]}
            if r is not None:
                row["rbox_cxcywha"] = [round(float(v), 4) for v in r[k]]
                row["polygon"] = [round(float(v), 2) for v in polys[k]]
            out.append(row)
    write_json(path, {"pseudo_labels": out})


def run_two_phase(ctx: Any, *, method: str, config: Any, build: Callable[[TrainPlan], Any],
                  make_step: Callable[..., Callable[[int], Mapping[str, Any]]] | None = None,
                  pseudo: PseudoFn, detector: str = "faster_rcnn",
                  extra_notes: Callable[[Any], Mapping[str, Any]] | None = None,
                  train_generator: Callable[..., Mapping[str, Any]] | None = None,
                  ) -> dict[str, Any]:
    """Train the generator, write pseudo labels, train the detector on them (each resumable).

    Args:
        ctx: the :class:`~baselines.methods.MethodContext`.
        method: the method's name (notes).
        config: the method's ``Config`` (part of the run's configuration hash).
        build: ``build(plan) -> net`` the generator network.
        make_step: ``make_step(net, samples, plan, seed, nn_all, device) -> step(it)``, trained
            with one :func:`fit` (checkpoint ``generator_ckpt.pt``); or
        train_generator: ``train_generator(net, samples, plan, seed, nn_all, device, work_dir,
            config) -> notes`` for generators with phases of their own (several fits).
        pseudo: ``pseudo(net, image[1,3,S,S], points, scale, S) -> (xyxy, rboxes|None)``.
        detector: the torchvision detector trained on the pseudo boxes.
        extra_notes: more notes from the generator (e.g. which mask source ran).
    """
    import torch

    from baselines.points import nearest_neighbour_distance
    from baselines.supervised import FINAL, detector_spec, read_saved, save_model, train_detector
    from baselines.teacher import split_plan
    from baselines.train import fit

    samples, counts = load_point_samples(ctx.train_json, ctx.data_dir)
    if not any(len(s.points) for s in samples):
        raise TinysetError(f"{ctx.train_json}: no points to train on")
    share = float(ctx.setting("generator_share", 0.5))
    gen_plan, det_plan = split_plan(ctx.plan, share)
    cfg = {"method": method, "method_config": dataclasses.asdict(config),
           "plan": ctx.plan.as_dict(), "generator_share": share, "seed": ctx.seed,
           "detector": detector, "train_sha": file_digest(ctx.train_json)}
    notes: dict[str, Any] = {"method": method, "config": dataclasses.asdict(config),
                             "generator_share": share, "detector": detector, **counts,
                             "pseudo_labels": str(ctx.work_dir / PSEUDO),
                             "supervision": "points only (bbox read only to score pseudo boxes)"}
    final = ctx.work_dir / FINAL
    if final.is_file():
        saved = read_saved(final)
        if saved.get("config") == cfg:
            return {**notes, "reused": str(final), **saved.get("train_stats", {})}
    ctx.work_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(ctx.seed)
    nn_all = [nearest_neighbour_distance(s.points) for s in samples]
    net = build(gen_plan).to(ctx.device)
    gen_path = ctx.work_dir / GENERATOR
    gen_cfg = {**cfg, "phase": "generator"}
    gen_stats: dict[str, Any]
    state = (torch.load(gen_path, map_location="cpu", weights_only=False)
             if gen_path.is_file() else None)
    if state is not None and state.get("config") == gen_cfg:
        net.load_state_dict(state["model"])
        gen_stats = state["stats"]
    else:
        if train_generator is not None:
            gen_stats = dict(train_generator(net, samples, gen_plan, ctx.seed, nn_all, ctx.device,
                                             ctx.work_dir, gen_cfg))
        else:
            assert make_step is not None
            step = make_step(net, samples, gen_plan, ctx.seed, nn_all, ctx.device)
            res = fit(net, step, gen_plan, ctx.work_dir, seed=ctx.seed, config=gen_cfg,
                      checkpoint_name="generator_ckpt.pt")
            gen_stats = {f"generator_{k}": v for k, v in res.notes().items()}
        from tinyset_builder.io import atomic_path

        with atomic_path(gen_path, fsync=False) as tmp:
            torch.save({"config": gen_cfg, "model": net.state_dict(), "stats": gen_stats}, tmp)
    boxes, rboxes = generate_pseudo(net, samples, gen_plan, pseudo, ctx.device)
    write_pseudo(ctx.work_dir / PSEUDO, samples, boxes, rboxes)
    quality = pseudo_quality(boxes, [s.true_boxes for s in samples])
    more = dict(extra_notes(net)) if extra_notes is not None else {}
    del net
    det_samples = [Sample(s.image_id, s.path, b, np.ones(len(b), np.int64))
                   for s, b in zip(samples, boxes, strict=True)]
    spec = detector_spec(det_plan, detector, 1)
    model, result = train_detector(det_samples, det_plan, spec, ctx.work_dir, seed=ctx.seed,
                                   device=ctx.device, config={**cfg, "phase": "detector"})
    stats = {**gen_stats, **{f"detector_{k}": v for k, v in result.notes().items()},
             **quality, **more}
    save_model(final, model, spec, cfg, stats)
    (ctx.work_dir / "pseudo_quality.json").write_text(json.dumps(quality, indent=1))
    return {**notes, **stats}
