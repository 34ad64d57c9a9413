"""Point Teacher (horizontal boxes): two-phase teacher–student denoising of point annotations.

Paper: H. Zhu, C. Xu, R. Zhang, F. Xu, W. Yang, H. Zhang, G.-S. Xia, "Tiny Object Detection with
Single Point Supervision", arXiv 2412.05837 (2024).
Authors' code read: github.com/ZhuHaoranEIS/Point-Teacher, commit
``7c557f2ed89751962cce19ae044ba9c95873c9a6`` — ``HBB_TOD/mmdet/models/detectors/
fcos_p2b_teacher_student.py`` (burn-in phase 1 on synthesised/masked images, phase 2 MIL
refinement, EMA teacher, ``update_teacher_model`` with decay 0.999), config
``HBB_TOD/configs/point_teacher/aitodv2_point_teacher_0%.py`` (``_point_ = 0``: centre points;
``burn_in_step``; the ``DN_DIoULoss`` noise-aware box losses). Our own implementation; the EMA
teacher is the shared engine :mod:`baselines.teacher`.

The generator is a dense stride-4 head (class and FCOS's four distances from the cell centre to
the box sides, as ``log`` strides) and an RoI MIL head on a ResNet-FPN student, with an EMA teacher
(``tracked`` by :func:`baselines.train.fit`). As in the authors' ``TopkAssigner`` (``topk = 3``,
point L1 cost), a box is trained at, and read from, the **3 cells nearest** its centre / the
point; the coarse box is the class-score-weighted mean of the three. The box channels start at
the mask prior's central size (:func:`size_prior_bias`: a 16-px square for 4–64 px masks), not
at ``exp(0)`` = one stride:

1. **Spatial-aware box generation** (first ``phase1_share`` of the generator budget): random
   rectangular regions of the crop are **masked** (filled with a random flat colour and noise,
   sizes log-uniform in ``mask_sizes``, never covering a point); the box head regresses each masked
   region's box (DIoU loss, the authors' ``DIoULoss``) from the cells nearest its centre — boxes
   whose extent is known — while the class head learns the annotated points (positives at their
   cells, masked regions ignored, the rest negative). The teacher then turns every point into a
   coarse pseudo box.
2. **Noise-aware label evolution**: around the *teacher's current* coarse box of each point a bag
   is built (:func:`baselines.points.fine_bags`: width/height rescaled, centre shaken); the
   student's MIL head learns it (bag score → 1, random negatives → 0) — *dynamic* MIL, the bags
   follow the teacher; the teacher's MIL scores pick the bag's best box (``top_k = 1``), blended
   with the coarse box as ``0.75·best + 0.25·coarse`` (the authors' ``beta``) into the refined
   pseudo box, which supervises the student's box head through the **jittering-IoU loss**
   (mean ``1 − IoU`` against ``jitters`` copies of the target shaken by ``jitter`` of its size,
   so a noisy target is not fitted exactly).
3. The teacher's refined pseudo boxes train Faster R-CNN (:mod:`baselines.supervised`).

Deviations (docs/baselines.md): a final Faster R-CNN on the teacher's pseudo boxes instead of the
authors' end-to-end FCOS student (so every point row is "generator → detector" at one budget);
masked regions are flat axis-aligned rectangles with sides log-uniform in 4–64 px (the authors
fill rotated rectangles of a per-dataset shape list, sides ≈ 5–300 px, with white); the box
channels initialised at the mask prior's central size (the authors' ReLU distances start near 0
on an ImageNet backbone trained 12 epochs at batch 2; at a CPU budget of ~40 steps the initial size
*is* the answer — measured in docs/baselines.md); one stride-4 dense level
(the authors' PSAGG top-down FPN aggregation feeds one level too); the jittering-IoU loss as
described above, not the authors' exact DN-DIoU weighting; the bag is also shaken by 0.1 (the
authors' one MIL stage uses the 5 × 5 rescalings only) and has no box-regression branch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from baselines.methods import MethodContext, Prediction, predict_saved

STRIDE = 4


@dataclass(frozen=True)
class Config:
    """Defaults (sizes in input pixels)."""

    phase1_share: float = 0.4
    masks_per_image: int = 8
    mask_sizes: tuple[float, float] = (4.0, 64.0)
    ema_momentum: float = 0.999
    cells: int = 3
    bag_ratios: tuple[float, ...] = (1.0, 1.2, 1.3, 0.8, 0.7)
    bag_shakes: tuple[float, ...] = (0.1,)
    top_k: int = 1
    beta: float = 0.25
    negatives: int = 64
    jitter: float = 0.1
    jitters: int = 4
    max_points: int = 64


# --------------------------------------------------------------------------------------------
# Phase 1: masked regions with known boxes
# --------------------------------------------------------------------------------------------

def draw_masks(points: np.ndarray, size: int, n: int, sizes: tuple[float, float],
               rng: np.random.Generator, tries: int = 20) -> np.ndarray:
    """Up to ``n`` random xyxy rectangles inside ``size²`` covering none of ``points``."""
    lo, hi = np.log(sizes[0]), np.log(sizes[1])
    out: list[np.ndarray] = []
    for _ in range(n * tries):
        if len(out) == n:
            break
        w, h = np.exp(rng.uniform(lo, hi, 2))
        w, h = min(w, size - 1.0), min(h, size - 1.0)
        x0, y0 = rng.uniform(0, size - w), rng.uniform(0, size - h)
        box = np.array([x0, y0, x0 + w, y0 + h], np.float32)
        inside = ((points[:, 0] >= box[0] - 1) & (points[:, 0] <= box[2] + 1)
                  & (points[:, 1] >= box[1] - 1) & (points[:, 1] <= box[3] + 1))
        if not inside.any():
            out.append(box)
    return np.asarray(out, np.float32).reshape(-1, 4)


def paint_masks(image: Any, boxes: np.ndarray, rng: np.random.Generator) -> Any:
    """The image with each box filled by a random flat colour plus a little noise."""
    import torch

    image = image.clone()
    _, h, w = image.shape
    for x0, y0, x1, y1 in boxes:
        c0, r0 = max(0, int(np.floor(x0))), max(0, int(np.floor(y0)))
        c1, r1 = min(w, max(int(np.ceil(x1)), c0 + 1)), min(h, max(int(np.ceil(y1)), r0 + 1))
        colour = rng.uniform(0, 1, (3, 1, 1)) + rng.normal(0, 0.03, (3, r1 - r0, c1 - c0))
        image[:, r0:r1, c0:c1] = torch.from_numpy(np.clip(colour, 0, 1).astype(np.float32))
    return image


def nearest_cells(xy: np.ndarray, k: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns ``(N, k)`` of the ``k`` stride-4 cells whose centres are nearest (L1) to
    each point ``xy`` (input pixels) — the authors' ``TopkAssigner`` with its point L1 cost
    (``topk = 3``); ties go to the lower row, then the lower column. Cells stay in the grid."""
    xy = np.asarray(xy, np.float64).reshape(-1, 2)
    c0 = np.clip(np.floor(xy[:, 0] / STRIDE).astype(int), 0, w - 1)
    r0 = np.clip(np.floor(xy[:, 1] / STRIDE).astype(int), 0, h - 1)
    d = np.arange(-2, 3)
    rr = np.clip(r0[:, None, None] + d[None, :, None], 0, h - 1)
    cc = np.clip(c0[:, None, None] + d[None, None, :], 0, w - 1)
    rr, cc = np.broadcast_arrays(rr, cc)
    rr, cc = rr.reshape(len(xy), -1), cc.reshape(len(xy), -1)
    key = rr * w + cc
    cost = (np.abs((cc + 0.5) * STRIDE - xy[:, :1]) + np.abs((rr + 0.5) * STRIDE - xy[:, 1:])
            + 1e-6 * key)  # tie-break: row-major order
    # at the border the clipped window repeats cells: keep each cell once
    cost[np.tril(key[:, :, None] == key[:, None, :], -1).any(-1)] = np.inf
    order = np.argsort(cost, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(rr, order, 1), np.take_along_axis(cc, order, 1)


def decode_cells(out: Any, rows: np.ndarray, cols: np.ndarray) -> Any:
    """Boxes (xyxy, input pixels) decoded at cells ``(rows, cols)`` of a dense output whose
    channels 1–4 are ``log`` of the distances (in strides) from the cell centre to the box's left,
    top, right and bottom sides — FCOS's encoding, so a box always contains its cell's centre."""
    import torch

    rt, ct = torch.from_numpy(np.asarray(rows).reshape(-1)), torch.from_numpy(
        np.asarray(cols).reshape(-1))
    v = out[0, 1:5, rt, ct].T
    d = torch.exp(v.clamp(-4, 5)) * STRIDE
    cx, cy = (ct.to(v) + 0.5) * STRIDE, (rt.to(v) + 0.5) * STRIDE
    return torch.stack([cx - d[:, 0], cy - d[:, 1], cx + d[:, 2], cy + d[:, 3]], 1)


def decode_at(out: Any, points: np.ndarray, k: int = 1) -> Any:
    """Boxes (xyxy, input pixels) the dense head predicts for each point (differentiable): the
    boxes decoded at the point's ``k`` nearest cells, averaged with their class scores as
    weights (the authors' coarse box: the score-weighted mean of its top-k locations)."""
    import torch

    h, w = out.shape[-2:]
    r, c = nearest_cells(points, k, h, w)
    boxes = decode_cells(out, r, c).view(len(r), k, 4)
    if k == 1:
        return boxes[:, 0]
    weight = torch.sigmoid(out[0, 0, torch.from_numpy(r.reshape(-1)),
                               torch.from_numpy(c.reshape(-1))].detach()).view(len(r), k, 1)
    return (boxes * weight).sum(1) / weight.sum(1).clamp_min(1e-12)


def box_targets_loss(out: Any, boxes: np.ndarray, k: int = 1) -> Any:
    """DIoU loss (the authors' phase-1 ``DIoULoss``) of the boxes decoded at the ``k`` cells
    nearest each box's centre against the box, summed over boxes, averaged over the cells."""
    import torch
    from torchvision.ops import distance_box_iou_loss

    if not len(boxes):
        return out.sum() * 0.0
    h, w = out.shape[-2:]
    r, c = nearest_cells((boxes[:, :2] + boxes[:, 2:]) / 2, k, h, w)
    pred = decode_cells(out, r, c)
    target = torch.from_numpy(np.repeat(np.asarray(boxes, np.float32), k, axis=0)).to(pred)
    return distance_box_iou_loss(pred, target, reduction="sum") / k


def class_loss(out: Any, points: np.ndarray, ignore: np.ndarray) -> tuple[Any, int]:
    """Focal loss of the class map: point cells positive, ``ignore`` boxes' cells ignored."""
    import torch
    from torchvision.ops import sigmoid_focal_loss

    h, w = out.shape[-2:]
    target = torch.zeros((h, w))
    valid = torch.ones((h, w), dtype=torch.bool)
    for x0, y0, x1, y1 in ignore:
        valid[int(y0 // STRIDE):int(np.ceil(y1 / STRIDE)), int(x0 // STRIDE):int(
            np.ceil(x1 / STRIDE))] = False
    if len(points):
        c = np.clip((points[:, 0] // STRIDE).astype(int), 0, w - 1)
        r = np.clip((points[:, 1] // STRIDE).astype(int), 0, h - 1)
        target[torch.from_numpy(r), torch.from_numpy(c)] = 1.0
        valid[torch.from_numpy(r), torch.from_numpy(c)] = True
    loss = sigmoid_focal_loss(out[0, 0][valid], target.to(out)[valid], reduction="sum")
    return loss, len(points)


# --------------------------------------------------------------------------------------------
# Phase 2: dynamic MIL and the jittering-IoU loss
# --------------------------------------------------------------------------------------------

def jitter_boxes(boxes: np.ndarray, amount: float, n: int, rng: np.random.Generator
                 ) -> np.ndarray:
    """``(n, N, 4)`` copies of xyxy ``boxes`` with centre and size shaken by ``amount``·size."""
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    wh = b[:, 2:] - b[:, :2]
    c = (b[:, :2] + b[:, 2:]) / 2
    out = []
    for _ in range(n):
        dc = rng.uniform(-amount, amount, c.shape) * wh
        s = np.exp(rng.uniform(-amount, amount, wh.shape))
        nc, nwh = c + dc, wh * s
        out.append(np.concatenate([nc - nwh / 2, nc + nwh / 2], 1))
    return np.asarray(out, np.float32)


def jittering_iou_loss(pred: Any, targets: Any) -> Any:
    """Mean ``1 − IoU`` of ``pred`` (N, 4) against each jittered target set (J, N, 4)."""
    from torchvision.ops import box_iou

    losses = [1.0 - box_iou(pred, t).diagonal() for t in targets]
    return sum(x.sum() for x in losses) / len(losses)


def refine(teacher_net: Any, feats: Any, coarse: np.ndarray, cfg: Config, size: int,
           ) -> tuple[np.ndarray, np.ndarray]:
    """Bags around the coarse boxes and the refined boxes: the teacher's top-k MIL merge, blended
    with the coarse box by ``beta`` (the authors' ``mil_bag_selection``: ``(1 − β)·merged +
    β·coarse``, β = 0.25)."""
    import torch

    from baselines.points import fine_bags, mil_merge, mil_weights

    bags = np.clip(fine_bags(coarse, cfg.bag_ratios, cfg.bag_shakes), 0, size)
    n, m = bags.shape[:2]
    out = teacher_net.mil_forward(0, feats, [torch.from_numpy(bags.reshape(-1, 4)).to(
        feats["0"].device)], size)
    w = mil_weights(out["cls"].view(n, m).cpu().numpy(), out["ins"].view(n, m).cpu().numpy())
    merged = mil_merge(bags, w, cfg.top_k)
    return bags, ((1.0 - cfg.beta) * merged + cfg.beta * coarse).astype(np.float32)


def teacher_pseudo(net: Any, image: Any, points: np.ndarray, cfg: Config, size: int,
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Coarse (dense head at the points) and refined (MIL) pseudo boxes of one image."""
    feats = net.features(image)
    out = net.dense_forward(feats)[0]
    coarse = decode_at(out, points, cfg.cells).detach().cpu().numpy()
    coarse = np.clip(coarse, 0, size)
    _, refined = refine(net, feats, coarse, cfg, size)
    return coarse, refined


def train(ctx: MethodContext) -> dict[str, Any]:
    """Phase 1 (masked-region regression) and phase 2 (dynamic MIL) with an EMA teacher, then
    Faster R-CNN on the teacher's pseudo boxes."""
    import torch

    from baselines.data import step_rng
    from baselines.point_nets import (
        mil_bag_loss,
        negative_loss,
        point_batch,
        random_negatives,
        run_two_phase,
    )
    from baselines.teacher import ema_teacher, split_plan
    from baselines.train import fit, fit_stage

    cfg = ctx.config(Config)

    def train_generator(net: Any, samples: Any, plan: Any, seed: int, nn_all: Any, device: str,
                        work_dir: Path, config: Mapping[str, Any]) -> dict[str, Any]:
        # the authors' momentum as it is (no cap scaling): at a short budget the teacher is the
        # running mean of every student since the prior-initialised start (docs/baselines.md)
        teacher = ema_teacher(net, cfg.ema_momentum)
        plan1, plan2 = split_plan(plan, cfg.phase1_share)

        def sub(b: int, feats: Any) -> Any:
            return {k: v[b:b + 1] for k, v in feats.items()}

        def step1(it: int) -> Mapping[str, Any]:
            batch = point_batch(samples, it, plan1, seed, nn_all, device)
            rng = step_rng(seed, it, 13)
            size = batch.images.shape[-1]
            masks = [draw_masks(p, size, cfg.masks_per_image, cfg.mask_sizes, rng)
                     for p in batch.points]
            images = torch.stack([paint_masks(im, m, rng) for im, m in
                                  zip(batch.images, masks, strict=True)])
            out = net.dense_forward(net.features(images))[0]
            cls, box, npos, nbox = [], [], 0, 0
            for b, (pts, m) in enumerate(zip(batch.points, masks, strict=True)):
                lc, k = class_loss(out[b:b + 1], pts, m)
                cls.append(lc)
                npos += k
                box.append(box_targets_loss(out[b:b + 1], m, cfg.cells))
                nbox += len(m)
            return {"loss_cls": sum(cls) / max(1, npos), "loss_mask_box": sum(box) / max(1, nbox)}

        def step2(it: int) -> Mapping[str, Any]:
            batch = point_batch(samples, it, plan2, seed + 1, nn_all, device)
            rng = step_rng(seed, it, 17)
            size = batch.images.shape[-1]
            feats = net.features(batch.images)
            out = net.dense_forward(feats)[0]
            with torch.no_grad():
                t_feats = teacher.model.features(batch.images)
                t_out = teacher.model.dense_forward(t_feats)[0]
            cls, mil, jit, npos, nbox = [], [], [], 0, 0
            for b, pts in enumerate(batch.points):
                lc, k = class_loss(out[b:b + 1], pts, np.zeros((0, 4), np.float32))
                cls.append(lc)
                npos += k
                if not len(pts):
                    continue
                if len(pts) > cfg.max_points:
                    pts = pts[np.sort(rng.choice(len(pts), cfg.max_points, replace=False))]
                with torch.no_grad():
                    coarse = np.clip(decode_at(t_out[b:b + 1], pts, cfg.cells).cpu().numpy(),
                                     0, size)
                    bags, refined = refine(teacher.model, sub(b, t_feats), coarse, cfg, size)
                n, m = bags.shape[:2]
                s_mil = net.mil_forward(0, sub(b, feats), [torch.from_numpy(
                    bags.reshape(-1, 4)).to(device)], size)
                mil.append(mil_bag_loss(s_mil["cls"], s_mil["ins"], n, m))
                neg = random_negatives(bags, size, cfg.negatives, rng)
                mil.append(negative_loss(net.mil_forward(0, sub(b, feats), [torch.from_numpy(
                    neg).to(device)], size)["cls"]))
                targets = torch.from_numpy(jitter_boxes(refined, cfg.jitter, cfg.jitters, rng))
                jit.append(jittering_iou_loss(decode_at(out[b:b + 1], pts, cfg.cells),
                                              targets.to(device)))
                nbox += len(pts)
            zero = sum(p.sum() * 0.0 for p in net.parameters())
            return {"loss_cls": sum(cls) / max(1, npos), "loss_mil": sum(mil) if mil else zero,
                    "loss_jitter_iou": sum(jit) / max(1, nbox) if jit else zero}

        # phase 1's end state (student and teacher) is kept, so a run interrupted in phase 2
        # resumes there instead of recomputing phase 1
        done1 = work_dir / "pt_phase1.pt"
        r1 = fit_stage(done1, net, step1, plan1, work_dir, seed=seed,
                       config={**config, "phase": 1}, tracked={"teacher": teacher},
                       after_step=teacher.after_step(net), checkpoint_name="pt_phase1_ckpt.pt")
        r2 = fit(net, step2, plan2, work_dir, seed=seed + 1, config={**config, "phase": 2},
                 tracked={"teacher": teacher}, after_step=teacher.after_step(net),
                 checkpoint_name="pt_phase2_ckpt.pt")
        done1.unlink(missing_ok=True)
        # the generator's product is the teacher (it makes the pseudo boxes)
        net.load_state_dict(teacher.model.state_dict())
        return {**{f"phase1_{k}": v for k, v in r1.notes().items()},
                **{f"phase2_{k}": v for k, v in r2.notes().items()},
                "teacher_ema_updates": int(teacher.updates)}

    def pseudo(net: Any, image: Any, points: np.ndarray, scale: float, size: int):
        _, refined = teacher_pseudo(net, image, points, cfg, size)
        return refined, None

    return run_two_phase(ctx, method="point_teacher", config=cfg,
                         build=lambda plan: build_generator(plan, cfg),
                         train_generator=train_generator, pseudo=pseudo, detector="faster_rcnn")


def size_prior_bias(mask_sizes: tuple[float, float]) -> float:
    """The box channels' initial bias: ``log`` of half the mask prior's central side (the
    geometric mean of its log-uniform range) in strides, so that before any training every
    cell predicts a square of that side — the size prior, not 1 stride (``exp(0)``)."""
    return float(np.log(np.sqrt(mask_sizes[0] * mask_sizes[1]) / 2 / STRIDE))


def build_generator(plan: Any, cfg: Config) -> Any:
    """The generator: ResNet-FPN, one stride-4 dense head (class + 4 log-distances), one MIL
    head; the box channels start at the mask prior's central size (:func:`size_prior_bias`)."""
    import torch

    from baselines.point_nets import build_point_net

    net = build_point_net(plan, mil_heads=1, dense_levels=1, dense_outputs=5)
    with torch.no_grad():
        net.dense[0][-1].bias[1:5] = size_prior_bias(cfg.mask_sizes)
    return net


def predict(ctx: MethodContext) -> list[Prediction]:
    """Faster R-CNN (trained on the teacher's pseudo boxes) on every evaluation image."""
    return predict_saved(ctx)
