"""PointOBB-v3 (two-stage variant): MIL over point bags with multi-view scale and angle consistency.

Paper: P. Zhang, J. Luo, X. Yang, Y. Yu, Q. Li, Y. Zhou, X. Jia, X. Lu, J. Chen, X. Li, J. Yan,
Y. Li, "PointOBB-v3: Expanding Performance Boundaries of Single Point-Supervised Oriented Object
Detection", IJCV 2025 (arXiv 2501.13898).
Authors' code read: github.com/ZpyWHU/PointOBB-v3, commit
``95951985491b8df1dd0236c9b1c6c35027263378`` — ``PointOBB/mmdet/models/detectors/PointOBB.py``
(resized view, rotated and flipped views, SSC loss between views),
``PointOBB/configs2/pointobb/pointobbv3_r50_fpn_2x_dota_two_stage.py`` (bag scales
``4…96 × min(H, W)/100``, 7 ratios, top-7 merge, refinement bag). Our own implementation.

What runs here:

* the P2BNet-style two-stage MIL generator (:func:`baselines.methods.p2bnet.mil_pseudo`) with the
  v3 bag (scales 4, 8, 16, 24, 32, 48, 64, 72, 80, 96) and an **angle branch** ``(cos 2θ, sin 2θ)``
  on the first head;
* **scale-sensitive consistency (SSC)**: the same points in a copy of the crop resized by
  ``resize_ratio`` (bags resized with it) must give the same bag-weighted box size once scaled
  back (smooth-L1 on log sizes);
* **angle consistency** between the original and a rotated (a quarter turn, ``torch.rot90``:
  the angle moves by π/2) or vertically flipped (θ → −θ) view, alternating by step;
* pseudo oriented box = (point, merged box size, predicted angle); its horizontal envelope is the
  merged box itself (the bags are horizontal here); Faster R-CNN trains on it.

Deviations (docs/baselines.md): horizontal bags and RoI-Align (torchvision has no rotated
RoI-Align), so the angle only orients the kept rotated box; rotated view by exactly a quarter turn
(the authors draw π·U(0.25, 0.75) and rotate the crop); one resized view at 0.5.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from baselines.methods import MethodContext, Prediction, predict_saved


@dataclass(frozen=True)
class Config:
    """The authors' two-stage defaults (scales are multiples of ``min(H, W)/100``)."""

    base_scales: tuple[float, ...] = (4, 8, 16, 24, 32, 48, 64, 72, 80, 96)
    base_ratios: tuple[float, ...] = (1 / 3, 1 / 2, 1 / 1.5, 1.0, 1.5, 2.0, 3.0)
    fine_ratios: tuple[float, ...] = (1.0, 1.2, 1.3, 0.8, 0.7)
    fine_shakes: tuple[float, ...] = (0.1,)
    top_k: int = 7
    negatives: int = 64
    max_points: int = 48
    resize_ratio: float = 0.5
    ssc_weight: float = 1.0
    angle_weight: float = 1.0


def _stage0(net: Any, feats: Any, points: np.ndarray, cfg: Any, scale: float, size: int,
            tile: float) -> tuple[Any, Any]:
    """Bag-weighted ``(log w, log h)`` and ``(cos 2θ, sin 2θ)`` of each point (differentiable)."""
    import torch

    from baselines.methods.p2bnet import _bags

    bags = _bags(cfg, points, scale, size, tile)
    n, m = bags.shape[:2]
    out = net.mil_forward(0, feats, [torch.from_numpy(bags.reshape(-1, 4)).to(
        feats["0"].device)], size)
    w = torch.sigmoid(out["cls"].view(n, m)) * torch.softmax(out["ins"].view(n, m), dim=1)
    w = w / w.sum(dim=1, keepdim=True).clamp_min(1e-8)
    wh = torch.from_numpy(np.log(np.maximum(bags[..., 2:] - bags[..., :2], 1e-3))).to(w)
    log_wh = (w[..., None] * wh).sum(dim=1)
    ang = torch.nn.functional.normalize(out["angle"].view(n, m, 2), dim=-1)
    return log_wh, (w.detach()[..., None] * ang).sum(dim=1)


def angle_of(vec: np.ndarray) -> np.ndarray:
    """θ in ``[-π/2, π/2)`` from ``(cos 2θ, sin 2θ)``."""
    from baselines.points import wrap_angle

    return wrap_angle(np.arctan2(vec[..., 1], vec[..., 0]) / 2)


def train(ctx: MethodContext) -> dict[str, Any]:
    """Multi-view MIL generator → pseudo oriented boxes → Faster R-CNN on their envelopes."""
    import torch
    import torch.nn.functional as F

    from baselines.data import step_rng
    from baselines.methods.p2bnet import mil_pseudo
    from baselines.point_nets import build_point_net, point_batch, resize_image, run_two_phase

    cfg = ctx.config(Config)

    def make_step(net: Any, samples: Any, plan: Any, seed: int, nn_all: Any, device: str):
        def step(it: int) -> Mapping[str, Any]:
            batch = point_batch(samples, it, plan, seed, nn_all, device)
            rng = step_rng(seed, it, 11)
            size = batch.images.shape[-1]
            feats = net.features(batch.images)
            small = torch.stack([resize_image(im, cfg.resize_ratio) for im in batch.images])
            f_small = net.features(small)
            rotate = it % 2 == 0
            other = (torch.rot90(batch.images, 1, dims=(2, 3)) if rotate
                     else torch.flip(batch.images, dims=(2,)))
            f_other = net.features(other)
            mil, ssc, ang = [], [], []
            for b, pts in enumerate(batch.points):
                if not len(pts):
                    continue
                if len(pts) > cfg.max_points:
                    pts = pts[np.sort(rng.choice(len(pts), cfg.max_points, replace=False))]
                one = {k: v[b:b + 1] for k, v in feats.items()}
                sc, tile = batch.scales[b], batch.tiles[b]
                _, losses = mil_pseudo(net, one, pts, cfg, sc, size, tile, train=True, rng=rng)
                mil += losses
                wh0, a0 = _stage0(net, one, pts, cfg, sc, size, tile)
                r = cfg.resize_ratio
                s_one = {k: v[b:b + 1] for k, v in f_small.items()}
                wh1, _ = _stage0(net, s_one, pts * r, cfg, sc * r, small.shape[-1], tile)
                ssc.append(F.smooth_l1_loss(wh1 - np.log(r), wh0))
                o_one = {k: v[b:b + 1] for k, v in f_other.items()}
                if rotate:  # rot90 (k=1): (x, y) -> (y, size - x); the angle moves by π/2
                    p2 = np.stack([pts[:, 1], size - pts[:, 0]], 1).astype(np.float32)
                    want = -a0
                else:       # vertical flip: (x, y) -> (x, size - y); θ -> −θ
                    p2 = np.stack([pts[:, 0], size - pts[:, 1]], 1).astype(np.float32)
                    want = torch.stack([a0[:, 0], -a0[:, 1]], 1)
                _, a1 = _stage0(net, o_one, p2, cfg, sc, size, tile)
                ang.append(F.smooth_l1_loss(a1, want.detach()) + F.smooth_l1_loss(
                    want, a1.detach()))
            zero = sum(p.sum() * 0.0 for p in net.parameters())
            return {"loss_mil": sum(mil) if mil else zero,
                    "loss_ssc": cfg.ssc_weight * (sum(ssc) / len(ssc) if ssc else zero),
                    "loss_angle": cfg.angle_weight * (sum(ang) / len(ang) if ang else zero)}
        return step

    def pseudo(net: Any, image: Any, points: np.ndarray, scale: float, size: int):
        feats = net.features(image)
        boxes, _ = mil_pseudo(net, feats, points, cfg, scale, size, size / scale)
        _, a = _stage0(net, feats, points, cfg, scale, size, size / scale)
        theta = angle_of(a.cpu().numpy())
        c = (boxes[:, :2] + boxes[:, 2:]) / 2
        wh = boxes[:, 2:] - boxes[:, :2]
        rb = np.concatenate([c, wh, theta[:, None]], 1).astype(np.float32)
        return boxes, rb

    return run_two_phase(ctx, method="pointobb_v3", config=cfg,
                         build=lambda plan: build_point_net(plan, mil_heads=2, angle=True),
                         make_step=make_step, pseudo=pseudo, detector="faster_rcnn")


def predict(ctx: MethodContext) -> list[Prediction]:
    """Faster R-CNN (trained on the pseudo boxes) on every evaluation image."""
    return predict_saved(ctx)
