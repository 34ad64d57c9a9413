"""Point2RBox-v3 (two-stage option): progressive label assignment and mask priors, then FCOS.

Paper: T. Zhang, Z. Lu, et al. (VisionXLab), "Point2RBox-v3: Self-Bootstrapping from Point
Annotations via Integrated Pseudo-Label Refinement and Utilization", ICLR 2026 (arXiv 2509.26281).
Authors' code read: github.com/VisionXLab/Point2RBox-v3, commit
``0896e194fdbc6e976a8f843056d86fa41ca95bd1`` —
``mmrotate/models/dense_heads/point2rbox_v3_head.py`` (FCOS-style targets whose regress ranges
are applied to the *current pseudo boxes*; ``selest_pseudo``: the pseudo box is the prediction of
the level with the highest class score), ``configs/point2rbox_v3/_base_sam-dotav1-0.py``
(``sam_instance_thr = 4``: an image enters SAM only with few instances), the Voronoi-watershed
loss, and the two-stage configs ``point2rbox_v3-pseudo-generator-*.py`` →
``rotated-fcos-1x-*-using-pseudo.py``. The watershed was read again in
``mmrotate/models/losses/point2rbox/voronoi_watershed_loss.py`` at commit
``60dbb63ca26fad2d0c31c14f73869fe8a16b15ca`` (``cv2.watershed`` on the median-blurred colour
image; markers from a σ = 64 px Gaussian, thresholds 0.994 / 0.005 in
``point2rbox_v3-1x-dotav1-0.py``). Our own implementation on torchvision.

* **Mask priors (prior-guided dynamic mask source)**: each point gets a mask — from **SAM**
  (``transformers``' ``SamModel`` prompted with the point) when local SAM weights are given
  (option ``sam_weights``: a ``save_pretrained`` folder) *and* the image has at most
  ``sam_instance_thr`` points, otherwise from a **watershed** of the colour image
  (``cv2.watershed`` on the median-blurred image, as the authors run it) seeded at the points,
  with the Voronoi ridges between points and everything beyond ``max_radius`` as background.
  The mask's minimum-area rectangle (cv2.minAreaRect) is the box prior; the notes say how many
  priors came from each source.
* **Progressive label assignment (PLA)**: a dense head on P2–P5 predicts, per location, a class
  score, ``log(w/stride)``, ``log(h/stride)`` and ``(cos 2θ, sin 2θ)``. Each point is assigned to
  the level whose size range holds its *current* size estimate: the mask prior's during the first
  ``pla_start`` steps, then the network's own prediction at the point (the level with the highest
  score), so assignment follows the evolving pseudo boxes. Positives are the locations within
  0.75 stride of the point on that level; focal loss for the class, L1 to the mask prior for
  size and angle (the mask loss).
* The pseudo oriented boxes (best level's prediction at each point) → horizontal envelopes →
  torchvision FCOS (the authors train rotated FCOS).

Deviations (docs/baselines.md): no copy-paste / edge / overlap / self-supervised view losses of
the full method; size ranges scaled to tiny objects (≤ 16, 32, 64, > 64 px on P2–P5 instead of
64, 128, 256, 512 on P3–P7); horizontal final detector.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from baselines.methods import MethodContext, Prediction, predict_saved

STRIDES = (4, 8, 16, 32)


@dataclass(frozen=True)
class Config:
    """Defaults (sizes in input pixels)."""

    level_bounds: tuple[float, ...] = (16.0, 32.0, 64.0)
    pla_start: int = 30           # steps on the mask prior's size before PLA follows the network
    sam_instance_thr: int = 4     # the authors' _base_sam-*.py value
    max_radius: float = 48.0      # watershed background beyond this distance from every point
    centre_radius: float = 0.75   # positives within this many strides of the point
    box_weight: float = 1.0
    sam_weights: str | None = None  # local SAM save_pretrained folder (transformers)


# --------------------------------------------------------------------------------------------
# Mask priors
# --------------------------------------------------------------------------------------------

def watershed_priors(image: np.ndarray, points: np.ndarray, max_radius: float) -> np.ndarray:
    """Rotated box prior ``[cx, cy, w, h, θ]`` per point from a Voronoi-bounded watershed.

    Args:
        image: ``(H, W, 3)`` or ``(H, W)`` float image.
        points: ``(N, 2)`` pixel coordinates.
    """
    from scipy.spatial import cKDTree

    from baselines.points import mask_rbox, watershed_regions

    h, w = image.shape[:2]
    if len(points) > 1:  # Voronoi ridges (equidistant from the two nearest points) are background
        ys, xs = np.mgrid[0:h, 0:w]
        d, _ = cKDTree(points).query(np.stack([xs.ravel() + 0.5, ys.ravel() + 0.5], 1), k=2)
        ridge = (np.abs(d[:, 1] - d[:, 0]) < 1.0).reshape(h, w)
    else:
        ridge = np.zeros((h, w), bool)
    labels = watershed_regions(image, points, max_radius, background=ridge)
    out = []
    for i, (x, y) in enumerate(points):
        rb = mask_rbox(labels == i + 1)
        out.append(rb if rb is not None else np.asarray([x, y, 1, 1, 0], np.float32))
    return np.asarray(out, np.float32).reshape(-1, 5)


class SamPriors:
    """SAM masks through ``transformers`` from a local ``save_pretrained`` folder."""

    def __init__(self, folder: Path, device: str) -> None:
        from transformers import SamModel, SamProcessor

        self.model = SamModel.from_pretrained(str(folder)).to(device).eval()
        self.processor = SamProcessor.from_pretrained(str(folder))
        self.device = device

    def __call__(self, image: np.ndarray, points: np.ndarray) -> np.ndarray:
        """One mask per point prompt → its minimum-area rectangle."""
        import torch

        from baselines.points import mask_rbox

        pixels = (np.clip(image, 0, 1) * 255).astype(np.uint8)
        prompts = [[[[float(x), float(y)]] for x, y in points]]
        inputs = self.processor(images=pixels, input_points=prompts, return_tensors="pt")
        inputs = {k: v.to(self.device) if hasattr(v, "to") else v for k, v in inputs.items()}
        with torch.inference_mode():
            out = self.model(**inputs, multimask_output=False)
        masks = self.processor.image_processor.post_process_masks(
            out.pred_masks.cpu(), inputs["original_sizes"].cpu(),
            inputs["reshaped_input_sizes"].cpu())[0]
        rbs = []
        for k, (x, y) in enumerate(points):
            rb = mask_rbox(masks[k, 0].numpy().astype(bool))
            rbs.append(rb if rb is not None else np.asarray([x, y, 1, 1, 0], np.float32))
        return np.asarray(rbs, np.float32).reshape(-1, 5)


# --------------------------------------------------------------------------------------------
# Dense head targets (PLA)
# --------------------------------------------------------------------------------------------

def positive_cells(point: np.ndarray, stride: int, height: int, width: int,
                   radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Row/column indices of the cells whose centre lies within ``radius·stride`` of ``point``."""
    lim = radius * stride
    cols = np.arange(width)
    rows = np.arange(height)
    cs = cols[np.abs((cols + 0.5) * stride - point[0]) < lim]
    rs = rows[np.abs((rows + 0.5) * stride - point[1]) < lim]
    if not len(cs):
        cs = np.asarray([min(int(point[0] // stride), width - 1)])
    if not len(rs):
        rs = np.asarray([min(int(point[1] // stride), height - 1)])
    rr, cc = np.meshgrid(rs, cs, indexing="ij")
    return rr.ravel(), cc.ravel()


def read_at_points(outputs: list[Any], points: np.ndarray) -> tuple[Any, Any]:
    """Per level, the 5 outputs at each point's cell: ``(levels, N, 5)`` and the sizes ``(levels,
    N, 2)`` in input pixels."""
    import torch

    vals, sizes = [], []
    for lvl, out in enumerate(outputs):
        s = STRIDES[lvl]
        h, w = out.shape[-2:]
        c = np.clip((points[:, 0] // s).astype(int), 0, w - 1)
        r = np.clip((points[:, 1] // s).astype(int), 0, h - 1)
        v = out[0, :, torch.from_numpy(r), torch.from_numpy(c)].T  # (N, 5)
        vals.append(v)
        sizes.append(torch.exp(v[:, 1:3].clamp(-6, 6)) * s)
    return torch.stack(vals), torch.stack(sizes)


def pseudo_from_outputs(outputs: list[Any], points: np.ndarray) -> np.ndarray:
    """Rotated pseudo boxes: each point's prediction on the level with the highest score."""
    import torch

    from baselines.points import wrap_angle

    vals, sizes = read_at_points(outputs, points)
    best = torch.argmax(vals[..., 0], dim=0)
    idx = torch.arange(len(points))
    wh = sizes[best, idx].cpu().numpy()
    cs = vals[best, idx, 3:5].cpu().numpy()
    theta = wrap_angle(np.arctan2(cs[:, 1], cs[:, 0]) / 2)
    return np.concatenate([points, wh, theta[:, None]], 1).astype(np.float32)


def train(ctx: MethodContext) -> dict[str, Any]:
    """Mask priors + PLA dense generator → pseudo oriented boxes → FCOS on their envelopes."""
    import torch
    import torch.nn.functional as F
    from torchvision.ops import sigmoid_focal_loss

    from baselines.point_nets import build_point_net, point_batch, run_two_phase
    from baselines.points import assign_levels, rbox_to_hbox

    cfg = ctx.config(Config)
    sam_folder = cfg.sam_weights
    sam = SamPriors(Path(sam_folder), ctx.device) if sam_folder else None
    used = {"watershed": 0, "sam": 0}

    def priors(image: Any, pts: np.ndarray) -> np.ndarray:
        pixels = image.permute(1, 2, 0).cpu().numpy()
        if sam is not None and len(pts) <= cfg.sam_instance_thr:
            used["sam"] += len(pts)
            return sam(pixels, pts)
        used["watershed"] += len(pts)
        return watershed_priors(pixels, pts, cfg.max_radius)

    def make_step(net: Any, samples: Any, plan: Any, seed: int, nn_all: Any, device: str):
        pla_start = cfg.pla_start if plan.iterations is None else min(
            cfg.pla_start, max(1, plan.iterations // 12))

        def step(it: int) -> Mapping[str, Any]:
            batch = point_batch(samples, it, plan, seed, nn_all, device)
            outs = net.dense_forward(net.features(batch.images))
            cls_terms, box_terms, n_pos = [], [], 0
            for b, pts in enumerate(batch.points):
                per = [o[b:b + 1] for o in outs]
                labels = [torch.zeros(o.shape[-2:], device=o.device) for o in per]
                if len(pts):
                    prior = priors(batch.images[b], pts)
                    if it < pla_start:
                        est = prior[:, 2:4].max(axis=1)
                    else:
                        with torch.no_grad():
                            est = pseudo_from_outputs(per, pts)[:, 2:4].max(axis=1)
                    levels = assign_levels(est, cfg.level_bounds)
                    for k, (p, lvl) in enumerate(zip(pts, levels, strict=True)):
                        h, w = per[lvl].shape[-2:]
                        rr, cc = positive_cells(p, STRIDES[lvl], h, w, cfg.centre_radius)
                        labels[lvl][rr, cc] = 1.0
                        pred = per[lvl][0, 1:5, torch.from_numpy(rr), torch.from_numpy(cc)].T
                        s = STRIDES[lvl]
                        t_wh = torch.tensor(np.log(np.maximum(prior[k, 2:4], 1.0) / s),
                                            dtype=pred.dtype).expand(len(rr), 2)
                        a = 2 * float(prior[k, 4])
                        t_a = torch.tensor([np.cos(a), np.sin(a)], dtype=pred.dtype).expand(
                            len(rr), 2)
                        box_terms.append(F.l1_loss(pred[:, :2], t_wh, reduction="sum")
                                         + F.l1_loss(pred[:, 2:4], t_a, reduction="sum"))
                        n_pos += len(rr)
                for o, lab in zip(per, labels, strict=True):
                    cls_terms.append(sigmoid_focal_loss(o[0, 0], lab, reduction="sum"))
            norm = max(1.0, float(n_pos))
            zero = sum(p.sum() * 0.0 for p in net.parameters())
            return {"loss_cls": sum(cls_terms) / norm,
                    "loss_mask_box": cfg.box_weight * (sum(box_terms) / norm if box_terms
                                                       else zero)}
        return step

    def pseudo(net: Any, image: Any, points: np.ndarray, scale: float, size: int):
        rb = pseudo_from_outputs(net.dense_forward(net.features(image)), points)
        return rbox_to_hbox(rb), rb

    def notes(_: Any) -> dict[str, Any]:
        return {"mask_source": (f"SAM (transformers, images with <= {cfg.sam_instance_thr} "
                                f"points) + watershed" if sam_folder else "watershed"),
                "mask_priors_sam": used["sam"], "mask_priors_watershed": used["watershed"],
                "sam_weights": str(sam_folder) if sam_folder else
                "none given (option sam_weights): watershed priors only"}

    return run_two_phase(ctx, method="point2rbox_v3", config=cfg,
                         build=lambda plan: build_point_net(plan, dense_levels=4,
                                                            dense_outputs=5),
                         make_step=make_step, pseudo=pseudo, detector="fcos",
                         extra_notes=notes)


def predict(ctx: MethodContext) -> list[Prediction]:
    """FCOS (trained on the pseudo boxes' envelopes) on every evaluation image."""
    return predict_saved(ctx)
