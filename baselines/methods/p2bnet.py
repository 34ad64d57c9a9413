"""P2BNet: point-to-box network — MIL over proposal bags around each point, then Faster R-CNN.

Paper: P. Chen, X. Yu, X. Han, N. Hassan, K. Wang, J. Li, J. Zhao, H. Shi, Z. Han, Q. Ye,
"Point-to-Box Network for Accurate Object Detection via Single Point Supervision", ECCV 2022.
Authors' code read: github.com/ucas-vg/P2BNet (``TOV_mmdetection``), commit
``c820f3255c3cb7a2c3fd24d040e3b10502eea5af`` — ``mmdet/models/detectors/P2BNet.py`` (bag
generation), ``mmdet/models/roi_heads/P2B_head.py`` (MIL merge), config
``configs2/COCO/P2BNet/P2BNet_r50_fpn_1x_coco_ms.py``. Our own implementation on torchvision.

The three steps of the authors' procedure:

1. **Coarse pseudo-box generation (CBP)**: around each point a bag of ``len(scales)·len(ratios)``
   boxes (scale ``s·base`` with ``base = min(H, W)/100`` of the tile, ratio ``r``: width ``s·r``,
   height ``s/r``; cut symmetrically at the border); an RoI head with a class and an instance
   branch is trained with the MIL loss (bag score = Σ softmax(ins)·sigmoid(cls) → 1), random
   boxes overlapping no bag proposal (IoU < 0.3) are negatives;
2. **Pseudo-box refinement (PBR)**: a second head on a finer bag around the coarse box (width and
   height each rescaled by ``fine_ratios``, shifted by ``shake`` of its size) with negatives;
   the pseudo box is the weighted mean of the top-``k`` proposals by ``cls × ins``;
3. Faster R-CNN trained on the pseudo boxes (:mod:`baselines.supervised`).

Deviations (docs/baselines.md): class-agnostic sigmoid scores (the paper's stage-1 softmax over
COCO's classes has one class here), negatives in stage 1 too (with one class, nothing else
contrasts the bag), fewer negatives per image (CPU), the plan's backbone and crops.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from baselines.methods import MethodContext, Prediction, predict_saved


@dataclass(frozen=True)
class Config:
    """The authors' defaults (scales are multiples of ``min(H, W)/100`` of the tile)."""

    base_scales: tuple[float, ...] = (4, 8, 16, 32, 64, 128)
    base_ratios: tuple[float, ...] = (1 / 3, 1 / 2, 1 / 1.5, 1.0, 1.5, 2.0, 3.0)
    fine_ratios: tuple[float, ...] = (1.0, 1.2, 1.3, 0.8, 0.7)
    fine_shakes: tuple[float, ...] = (0.1,)
    top_k: int = 7
    negatives: int = 64
    max_points: int = 64  # points per image per step (bags are costly on CPU)


def scale_base(size: float) -> float:
    """P2BNet's bag unit: a hundredth of the (square) input side."""
    return size / 100.0


def _bags(cfg: Config, points: np.ndarray, scale: float, size: int, tile: float) -> np.ndarray:
    from baselines.point_nets import cut_symmetric
    from baselines.points import point_bags

    unit = scale_base(tile) * scale
    bags = point_bags(points, [s * unit for s in cfg.base_scales], cfg.base_ratios)
    return cut_symmetric(bags, points, size)


def _mil_stage(net: Any, stage: int, feats: Any, bags: np.ndarray, size: int, top_k: int,
               negatives: int, rng: np.random.Generator | None, losses: list[Any] | None,
               ) -> np.ndarray:
    """One MIL stage on ``(n, m, 4)`` bags: the merged box per point; with ``losses`` given,
    appends the bag loss and the loss on ``negatives`` random background boxes."""
    import torch

    from baselines.point_nets import mil_bag_loss, negative_loss, random_negatives
    from baselines.points import mil_merge, mil_weights

    dev = feats["0"].device
    n, m = bags.shape[:2]
    out = net.mil_forward(stage, feats, [torch.from_numpy(bags.reshape(-1, 4)).to(dev)], size)
    if losses is not None:
        losses.append(mil_bag_loss(out["cls"], out["ins"], n, m))
        neg = random_negatives(bags, size, negatives, rng)
        losses.append(negative_loss(
            net.mil_forward(stage, feats, [torch.from_numpy(neg).to(dev)], size)["cls"]))
    w = mil_weights(out["cls"].detach().view(n, m).cpu().numpy(),
                    out["ins"].detach().view(n, m).cpu().numpy())
    return mil_merge(bags, w, top_k)


def mil_pseudo(net: Any, feats: Any, points: np.ndarray, cfg: Config, scale: float, size: int,
               tile: float, *, train: bool = False, rng: np.random.Generator | None = None,
               ) -> tuple[np.ndarray, list[Any]]:
    """Both MIL stages on one image's points: the refined pseudo boxes and (``train``) losses."""
    from baselines.points import fine_bags

    losses: list[Any] | None = [] if train else None
    coarse = _mil_stage(net, 0, feats, _bags(cfg, points, scale, size, tile), size, cfg.top_k,
                        cfg.negatives, rng, losses)
    fine = np.clip(fine_bags(coarse, cfg.fine_ratios, cfg.fine_shakes), 0, size)
    boxes = _mil_stage(net, 1, feats, fine, size, cfg.top_k, cfg.negatives, rng, losses)
    return boxes, losses or []


def train(ctx: MethodContext) -> dict[str, Any]:
    """Generator (CBP + PBR) from points, pseudo boxes, Faster R-CNN on them."""
    from baselines.data import step_rng
    from baselines.point_nets import build_point_net, point_batch, run_two_phase

    cfg = ctx.config(Config)

    def make_step(net: Any, samples: Any, plan: Any, seed: int, nn_all: Any, device: str):
        def step(it: int) -> Mapping[str, Any]:
            batch = point_batch(samples, it, plan, seed, nn_all, device)
            rng = step_rng(seed, it, 11)
            feats = net.features(batch.images)
            size = batch.images.shape[-1]
            terms = []
            for b, pts in enumerate(batch.points):
                if not len(pts):
                    continue
                if len(pts) > cfg.max_points:
                    pts = pts[np.sort(rng.choice(len(pts), cfg.max_points, replace=False))]
                one = {k: v[b:b + 1] for k, v in feats.items()}
                _, losses = mil_pseudo(net, one, pts, cfg, batch.scales[b], size,
                                       batch.tiles[b], train=True, rng=rng)
                terms += losses
            total = sum(terms) if terms else sum(p.sum() * 0.0 for p in net.parameters())
            return {"loss_mil": total}
        return step

    def pseudo(net: Any, image: Any, points: np.ndarray, scale: float, size: int):
        feats = net.features(image)
        boxes, _ = mil_pseudo(net, feats, points, cfg, scale, size, size / scale)
        return boxes, None

    return run_two_phase(ctx, method="p2bnet", config=cfg,
                         build=lambda plan: build_point_net(plan, mil_heads=2),
                         make_step=make_step, pseudo=pseudo, detector="faster_rcnn")


def predict(ctx: MethodContext) -> list[Prediction]:
    """Faster R-CNN (trained on the pseudo boxes) on every evaluation image."""
    return predict_saved(ctx)
