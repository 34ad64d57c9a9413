"""Hungarian matching and the DEAL losses: varifocal + L1 + GIoU per layer, density focal loss.

Targets are per prompt set: the GT boxes of the prompted category (normalised cxcywh of the
network input). Total loss (eq. 11): ``L = Lcls + Lreg + λ·Ldensity`` where ``Lcls`` is the
varifocal loss and ``Lreg = w_l1·L1 + w_giou·GIoU``, summed over the decoder layers and the
encoder's selected queries, as RT-DETR does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor
from torchvision.ops import box_convert, box_iou, generalized_box_iou

from deal.config import DealConfig
from deal.model import DealOutput


@dataclass
class Target:
    """GT of one prompt set: ``boxes (G, 4)`` normalised cxcywh of the padded input."""

    boxes: Tensor


def xyxy(b: Tensor) -> Tensor:
    """cxcywh -> xyxy, any leading shape."""
    return box_convert(b, "cxcywh", "xyxy")


@torch.no_grad()
def hungarian_match(logits: Tensor, boxes: Tensor, target: Tensor, cfg: DealConfig,
                    alpha: float = 0.25, gamma: float = 2.0) -> tuple[Tensor, Tensor]:
    """Match queries to GT boxes of one image (scipy ``linear_sum_assignment``).

    Args:
        logits: ``(N, 1)`` query logits.
        boxes: ``(N, 4)`` cxcywh predictions.
        target: ``(G, 4)`` cxcywh GT.
        cfg: cost weights.

    Returns:
        ``(query_idx, gt_idx)`` int64 tensors of equal length ``min(N, G)``.
    """
    if len(target) == 0 or len(boxes) == 0:
        empty = torch.zeros(0, dtype=torch.long)
        return empty, empty
    p = logits[:, 0].sigmoid()
    # RT-DETR's focal matching cost for the (single) prompted class.
    pos = alpha * (1 - p) ** gamma * -(p + 1e-8).log()
    neg = (1 - alpha) * p ** gamma * -(1 - p + 1e-8).log()
    c_cls = (pos - neg)[:, None]                                   # (N, 1)
    c_l1 = torch.cdist(boxes, target, p=1)                         # (N, G)
    c_giou = -generalized_box_iou(xyxy(boxes), xyxy(target))       # (N, G)
    cost = cfg.cost_class * c_cls + cfg.cost_l1 * c_l1 + cfg.cost_giou * c_giou
    q, g = linear_sum_assignment(cost.cpu().numpy())
    return torch.as_tensor(q, dtype=torch.long), torch.as_tensor(g, dtype=torch.long)


def varifocal_loss(logits: Tensor, target_score: Tensor, alpha: float = 0.75,
                   gamma: float = 2.0) -> Tensor:
    """Varifocal loss (IoU-aware, RT-DETR), summed: ``logits`` and ``target_score`` ``(M,)``."""
    p = logits.sigmoid().detach()
    weight = alpha * p ** gamma * (1 - (target_score > 0).float()) + target_score
    return (F.binary_cross_entropy_with_logits(logits, target_score, reduction="none")
            * weight).sum()


def density_target(targets: list[Target], shape: tuple[int, int], sigma: float,
                   device: torch.device, mode: str = "peak") -> Tensor:
    """Density ground truth at every prompted GT centre.

    Args:
        targets: per image, normalised cxcywh boxes.
        shape: ``(h, w)`` of S3.
        sigma: Gaussian sigma in cells (grown with the box size, at least ``sigma``).
        device: torch device.
        mode: ``"peak"``: a Gaussian of peak value 1 per object (maximum where they overlap);
            ``"count"``: a Gaussian normalised to sum 1 over the map per object (summed where
            they overlap), so the map integrates to the object count (eq. 8).

    Returns:
        ``(B, 1, h, w)``; in [0, 1] for ``"peak"``.
    """
    h, w = shape
    out = torch.zeros(len(targets), 1, h, w, device=device)
    gy, gx = torch.meshgrid(torch.arange(h, dtype=torch.float32, device=device),
                            torch.arange(w, dtype=torch.float32, device=device), indexing="ij")
    for i, t in enumerate(targets):
        if len(t.boxes) == 0:
            continue
        b = t.boxes.to(device)
        cx = (b[:, 0] * w).floor()  # the centre's cell gets exactly 1
        cy = (b[:, 1] * h).floor()
        s = torch.maximum(torch.full_like(cx, sigma), 0.25 * (b[:, 2] * w + b[:, 3] * h) / 2)
        g = torch.exp(-((gx[None] - cx[:, None, None]) ** 2 + (gy[None] - cy[:, None, None]) ** 2)
                      / (2 * s[:, None, None] ** 2))              # (G, h, w)
        if mode == "count":
            # Each object's Gaussian sums to 1 over the map (cut by the border: renormalised).
            out[i, 0] = (g / g.flatten(1).sum(1).clamp(min=1e-12)[:, None, None]).sum(0)
        else:
            out[i, 0] = g.amax(0)
    return out


def density_soft_focal_loss(logits: Tensor, target: Tensor, beta: float = 2.0) -> Tensor:
    """Focal loss with soft targets (quality focal loss, Li et al. 2020) for a count density.

    ``BCE(σ(x), y) · |y − σ(x)|^β`` summed, divided by the object count (the target's sum, at
    least 1): a focal form, as eq. 10 asks, for targets that are not 0/1 peaks.
    """
    y = target.clamp(max=1.0)  # overlapping objects can sum above 1; a sigmoid cannot
    p = logits.sigmoid()
    loss = F.binary_cross_entropy_with_logits(logits, y, reduction="none")
    loss = loss * (y - p).abs().pow(beta)
    return loss.sum() / target.sum().clamp(min=1.0)


def density_focal_loss(logits: Tensor, target: Tensor, alpha: float = 2.0,
                       beta: float = 4.0) -> Tensor:
    """Penalty-reduced focal loss (CenterNet form of the focal loss) for the density map.

    Args:
        logits: ``(B, 1, h, w)`` DM logits.
        target: ``(B, 1, h, w)`` Gaussian target in [0, 1] (1 at object centres).

    Returns:
        Scalar: summed loss divided by the number of object centres (at least 1).
    """
    p = logits.sigmoid().clamp(1e-6, 1 - 1e-6)
    pos = target.eq(1).float()
    pos_loss = -(1 - p) ** alpha * p.log() * pos
    neg_loss = -(1 - target) ** beta * p ** alpha * (1 - p).log() * (1 - pos)
    return (pos_loss.sum() + neg_loss.sum()) / pos.sum().clamp(min=1.0)


def _set_loss(logits: Tensor, boxes: Tensor, mask: Tensor, targets: list[Target],
              cfg: DealConfig, num_gt: float) -> tuple[Tensor, Tensor]:
    """Varifocal and regression loss of one set of predictions ``(B, N, 1)``, ``(B, N, 4)``."""
    cls_terms, reg = [], logits.new_zeros(())
    for i, t in enumerate(targets):
        valid = mask[i]
        lg, bx = logits[i][valid], boxes[i][valid]               # (n, 1), (n, 4)
        score = torch.zeros(len(lg), device=lg.device)
        qi, gi = hungarian_match(lg, bx, t.boxes, cfg)
        if len(qi):
            pb, gb = bx[qi], t.boxes[gi].to(bx.device)
            iou = box_iou(xyxy(pb.detach()), xyxy(gb)).diagonal()
            score[qi] = iou.clamp(min=0.01)  # IoU-aware target of varifocal loss
            reg = reg + (cfg.w_l1 * F.l1_loss(pb, gb, reduction="sum")
                         + cfg.w_giou * (1 - generalized_box_iou(xyxy(pb), xyxy(gb)).diagonal()
                                         ).sum())
        cls_terms.append(varifocal_loss(lg[:, 0], score))
    return cfg.w_vfl * torch.stack(cls_terms).sum() / num_gt, reg / num_gt


def _denoising_loss(dn: tuple[Tensor, Tensor, Tensor, Tensor], targets: list[Target],
                    cfg: DealConfig, num_gt: float) -> tuple[Tensor, Tensor]:
    """RT-DETR's denoising loss: positives regress to their GT (known assignment, no matching)
    with an IoU varifocal target, negatives are background; per layer, divided by
    ``num_gt · groups``."""
    logits, boxes, gt, positive = dn
    max_gt = max(len(t.boxes) for t in targets)
    norm = num_gt * (gt.shape[1] // (2 * max_gt))  # num_gt · groups
    cls, reg = logits.new_zeros(()), logits.new_zeros(())
    for lg, bx in zip(logits, boxes, strict=True):
        for i, t in enumerate(targets):
            valid = gt[i] >= 0
            if not valid.any():
                continue
            pos = positive[i] & valid
            score = torch.zeros(int(valid.sum()), device=lg.device)
            pb, gb = bx[i][pos], t.boxes.to(bx.device)[gt[i][pos]]
            iou = box_iou(xyxy(pb.detach()), xyxy(gb)).diagonal().clamp(min=0.01)
            score[pos[valid]] = iou
            cls = cls + varifocal_loss(lg[i][valid][:, 0], score)
            reg = reg + (cfg.w_l1 * F.l1_loss(pb, gb, reduction="sum")
                         + cfg.w_giou * (1 - generalized_box_iou(xyxy(pb), xyxy(gb)).diagonal()
                                         ).sum())
    return cfg.w_vfl * cls / norm, reg / norm


def deal_loss(out: DealOutput, targets: list[Target], cfg: DealConfig) -> dict[str, Tensor]:
    """All losses of a batch.

    Args:
        out: the model output for B prompt sets.
        targets: B targets (GT of the prompted categories).
        cfg: loss weights.

    Returns:
        ``{"cls", "reg", "density", "total"}`` scalars; ``reg`` is exactly 0 without GT.
    """
    num_gt = float(max(sum(len(t.boxes) for t in targets), 1))
    cls, reg = _set_loss(out.enc_logits, out.enc_boxes, out.query_mask, targets, cfg, num_gt)
    for lg, bx in zip(out.logits, out.boxes, strict=True):
        c, r = _set_loss(lg, bx, out.query_mask, targets, cfg, num_gt)
        cls, reg = cls + c, reg + r
    if out.dn is not None:
        c, r = _denoising_loss(out.dn, targets, cfg, num_gt)
        cls, reg = cls + c, reg + r
    density = cls.new_zeros(())
    if out.density_logits is not None:
        dt = density_target(targets, tuple(out.density_logits.shape[-2:]), cfg.density_sigma,
                            out.density_logits.device, mode=cfg.density_mode)
        density = (density_soft_focal_loss(out.density_logits, dt) if cfg.density_mode == "count"
                   else density_focal_loss(out.density_logits, dt))
    total = cls + reg + cfg.w_density * density
    return {"cls": cls, "reg": reg, "density": density, "total": total}


def match_quality(out: DealOutput, targets: list[Target], cfg: DealConfig,
                  ) -> list[np.ndarray]:
    """Matching quality ``q = score · IoU`` of every GT of each set (final layer).

    This is the ``q(·)`` of Algorithm 1 ("classification confidence and localisation
    accuracy"); PG-CPP prompts the GT with the lowest value next.

    Returns:
        Per set, a ``(G,)`` float array (0 for a GT no query was matched to).
    """
    return [q for q, _ in matched_predictions(out, targets, cfg)]


def matched_predictions(out: DealOutput, targets: list[Target], cfg: DealConfig,
                        ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per set, ``q (G,)`` as in :func:`match_quality` and the matched predictions' boxes.

    Returns:
        Per set, ``(q, boxes)``: ``boxes (G, 4)`` normalised cxcywh of the prediction matched to
        each GT (NaN rows for a GT without one). PG-CPP's paper variant prompts the centre of the
        worst of these predictions (``Center(b*)`` of eq. 12–13).
    """
    res = []
    logits, boxes = out.logits[-1], out.boxes[-1]
    for i, t in enumerate(targets):
        q = np.zeros(len(t.boxes), dtype=np.float64)
        pred = np.full((len(t.boxes), 4), np.nan, dtype=np.float64)
        valid = out.query_mask[i]
        lg, bx = logits[i][valid].detach(), boxes[i][valid].detach()
        qi, gi = hungarian_match(lg, bx, t.boxes, cfg)
        if len(qi):
            iou = box_iou(xyxy(bx[qi]), xyxy(t.boxes[gi].to(bx.device))).diagonal()
            q[gi.numpy()] = (lg[qi, 0].sigmoid() * iou).cpu().numpy()
            pred[gi.numpy()] = bx[qi].cpu().numpy()
        res.append((q, pred))
    return res
