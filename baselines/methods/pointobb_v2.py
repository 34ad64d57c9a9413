"""PointOBB-v2: a class probability map learned from points, PCA for angle and extent, detector.

Paper: B. Ren, X. Yang, Y. Yu, J. Luo, Z. Deng, "PointOBB-v2: Towards Simpler, Faster, and
Stronger Single Point Supervised Oriented Object Detection", ICLR 2025.
Authors' code read: github.com/taugeren/PointOBB-v2, commit
``b0d122f75a5cb3dadaad78e60b906bc47912620d`` — ``mmrotate/models/dense_heads/cpm_head.py``
(positive/negative sampling of the CPM), ``mmrotate/models/dense_heads/pseudo_label_head.py``
(PCA of the map around each point, boundary search along the principal axes), configs
``configs/pointobbv2/train_cpm_dotav10.py`` / ``generate_pseudo_label_dotav10.py``. Our own
implementation on torchvision.

1. **Class probability map (CPM)** on the stride-4 level: a location is **positive** within
   ``min(d_nn/2, pos_radius)`` of a point (``d_nn``: distance to the nearest other point),
   **negative** when it is farther from every point than that point's ``d_nn`` (lone points:
   beyond 128 px) or within ``mid_radius`` of the midpoint between two nearest neighbours;
   everything else is ignored; focal loss.
2. **Pseudo oriented boxes**: the map in a ``pca_length`` window on each point (cells nearer to
   another point masked out) gives the major axis by weighted PCA; the box extends along both
   principal axes until the probability drops below ``boundary_thr`` (at most 128 px).
3. The enclosing horizontal boxes train Faster R-CNN (the authors train an oriented detector;
   TinySet is evaluated with horizontal boxes). The rotated pseudo boxes and their polygons are
   kept in ``pseudo_boxes.json``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from baselines.methods import MethodContext, Prediction, predict_saved


@dataclass(frozen=True)
class Config:
    """The authors' defaults (pixels of the input)."""

    pos_radius: float = 8.0        # thresh1
    mid_radius: float = 4.0        # thresh2_bg
    alpha: float = 1.0
    pca_length: float = 28.0
    boundary_thr: float = 0.1      # thresh3
    max_length: float = 128.0
    stride: int = 4


def cpm_targets(points: np.ndarray, nn_dist: np.ndarray, height: int, width: int, cfg: Config,
                ) -> np.ndarray:
    """Labels of the stride-``cfg.stride`` grid: 1 positive, 0 negative, -1 ignored."""
    s = cfg.stride
    ys, xs = np.mgrid[0:height, 0:width]
    cells = np.stack([(xs + 0.5) * s, (ys + 0.5) * s], -1).reshape(-1, 2)
    labels = np.full(len(cells), -1, np.int8)
    if not len(points):
        labels[:] = 0
        return labels.reshape(height, width)
    d = np.linalg.norm(cells[:, None, :] - points[None, :, :], axis=-1)  # (cells, points)
    if len(points) == 1:
        labels[d[:, 0] > 128] = 0
        labels[d[:, 0] < cfg.pos_radius] = 1
        return labels.reshape(height, width)
    nn = np.where(np.isfinite(nn_dist), nn_dist, 1e9)
    labels[(cfg.alpha * d > nn[None, :]).all(axis=1)] = 0
    pos = d < np.minimum(nn / 2, cfg.pos_radius)[None, :]
    labels[pos.any(axis=1)] = 1
    from scipy.spatial import cKDTree

    _, j = cKDTree(points).query(points, k=2)
    mids = (points + points[j[:, 1]]) / 2
    dm = np.linalg.norm(cells[:, None, :] - mids[None, :, :], axis=-1)
    labels[(dm < cfg.mid_radius).any(axis=1)] = 0
    return labels.reshape(height, width)


def rbox_from_map(prob: np.ndarray, points: np.ndarray, cfg: Config) -> np.ndarray:
    """Rotated pseudo boxes ``[cx, cy, w, h, θ]`` (input pixels) from a stride-s probability map."""
    from scipy.spatial import cKDTree

    from baselines.points import axis_extent, pca_orientation

    s = cfg.stride
    half = max(1, int((cfg.pca_length / s - 1) / 2))
    tree = cKDTree(points)
    hgt, wid = prob.shape
    out = []
    for i, (x, y) in enumerate(points):
        cx, cy = x / s - 0.5, y / s - 0.5  # the point in cell-index coordinates
        ix, iy = round(cx), round(cy)
        win = np.zeros((2 * half + 1, 2 * half + 1))
        for dy in range(-half, half + 1):
            for dx in range(-half, half + 1):
                yy, xx = iy + dy, ix + dx
                if 0 <= yy < hgt and 0 <= xx < wid:
                    win[dy + half, dx + half] = prob[yy, xx]
        cell_xy = (np.stack(np.meshgrid(np.arange(-half, half + 1) + ix,
                                        np.arange(-half, half + 1) + iy), -1) + 0.5) * s
        owner = tree.query(cell_xy.reshape(-1, 2))[1].reshape(win.shape)
        win = win * (owner == i)  # Voronoi mask: cells owned by another point do not count
        theta, _, _ = pca_orientation(win)
        major = (np.cos(theta), np.sin(theta))
        minor = (-np.sin(theta), np.cos(theta))
        lim = cfg.max_length / s
        ext = [axis_extent(prob, (cx, cy), d, cfg.boundary_thr, lim)
               for d in (major, (-major[0], -major[1]), minor, (-minor[0], -minor[1]))]
        w = (ext[0] + ext[1]) * s + 1
        h = (ext[2] + ext[3]) * s + 1
        out.append([x, y, w, h, theta])
    return np.asarray(out, np.float32).reshape(-1, 5)


def cpm_loss(logits: Any, labels: np.ndarray) -> Any:
    """Focal loss over the labelled cells, normalised by the positives (FCOS-style)."""
    import torch
    from torchvision.ops import sigmoid_focal_loss

    lab = torch.from_numpy(labels.astype(np.int64)).to(logits.device).view(-1)
    flat = logits.reshape(-1)
    keep = lab >= 0
    if not keep.any():
        return flat.sum() * 0.0
    loss = sigmoid_focal_loss(flat[keep], lab[keep].float(), reduction="sum")
    return loss / max(1.0, float((lab == 1).sum()))


def train(ctx: MethodContext) -> dict[str, Any]:
    """CPM from points → PCA pseudo oriented boxes → Faster R-CNN on their horizontal envelopes."""
    from baselines.point_nets import build_point_net, point_batch, run_two_phase
    from baselines.points import rbox_to_hbox

    cfg = ctx.config(Config)

    def make_step(net: Any, samples: Any, plan: Any, seed: int, nn_all: Any, device: str):
        def step(it: int) -> Mapping[str, Any]:
            batch = point_batch(samples, it, plan, seed, nn_all, device)
            logits = net.dense_forward(net.features(batch.images))[0]  # (B, 1, S/4, S/4)
            h, w = logits.shape[-2:]
            terms = [cpm_loss(logits[b, 0], cpm_targets(p, nn, h, w, cfg))
                     for b, (p, nn) in enumerate(zip(batch.points, batch.nn_dist, strict=True))]
            return {"loss_cpm": sum(terms) / len(terms)}
        return step

    def pseudo(net: Any, image: Any, points: np.ndarray, scale: float, size: int):
        import torch

        prob = torch.sigmoid(net.dense_forward(net.features(image))[0][0, 0]).cpu().numpy()
        rb = rbox_from_map(prob, points, cfg)
        return rbox_to_hbox(rb), rb

    return run_two_phase(ctx, method="pointobb_v2", config=cfg,
                         build=lambda plan: build_point_net(plan, dense_levels=1),
                         make_step=make_step, pseudo=pseudo, detector="faster_rcnn")


def predict(ctx: MethodContext) -> list[Prediction]:
    """Faster R-CNN (trained on the pseudo boxes' envelopes) on every evaluation image."""
    return predict_saved(ctx)
