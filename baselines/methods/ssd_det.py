"""SSD-Det (Wu et al., ICCV 2023) on Faster R-CNN — Table I rows 10 and 14 (noise-20/40).

Paper: D. Wu, P. Chen, X. Yu, G. Li, Z. Han, J. Jiao, "Spatial Self-Distillation for Object
Detection with Inaccurate Bounding Boxes", ICCV 2023. Authors' code: ``ucas-vg/PointTinyBenchmark``
branch ``SSD-Det`` @ 9ffa750d5caa16d2841679aa219ed08d625317b2 (``TOV_mmdetection/mmdet/models/point/
detectors/ENoiseBox.py``, ``roi_heads/EP2Bplus_head.py``, ``roi_heads/bbox_heads/
MIL_bbox_head_EPLUS.py``, ``mmdet/core/point/p2b_utils/{box_sampler,merge_bbox}.py``); the AI-TOD
configs the TinySet authors used are in ``ZhuHaoranEIS/DN-TOD`` @
0b110c0d84329f7bf4c199c7065dab6ff98327fb
(``supplyment/ssddet/faster_rcnn_r50_fpn_aitodv2_ssddet_{low,high}_noise.py``: RFLA's RPN, bag
shake 0.1 / 0.2). Own implementation.

Training step (the detector at test time is a plain Faster R-CNN, with RFLA's RPN priors):

1. **Proposal bags** (:func:`proposal_bag`): around every noisy box, its width and height scaled by
   every pair of ``base_ratios`` (1, 1.2, 1.3, 0.8, 0.7 → 25 boxes), each also shifted left, right,
   up and down by ``shake`` × its size (→ 125 boxes); boxes less than 70 % inside the image are
   invalid (:func:`bag_validity`).
2. **Spatial position self-distillation (SPSD)**: a regression branch on the bag's RoI features
   learns to move every proposal onto the noisy box (L1, weight 0.25); its predictions — which
   average the annotation noise out — replace the bag ("refined bag").
3. **MIL selection, stage 1**: classification and instance scores of the refined bag (instance
   softmax over the bag) are trained with a bag-level BCE (weight 0.25); the top-7 proposals
   weighted by ``cls · ins`` merge into a pseudo box (:func:`merge_topk`); a regression branch
   learns to move the bag onto the pseudo box (L1 weighted by the proposals' scores); its
   predictions form the next bag.
4. **Spatial identity self-distillation (SISD)**, stage 2: an IoU branch (features of a proposal
   plus the mean feature of its bag: the object's identity) predicts each proposal's IoU with the
   stage-1 pseudo box (smooth L1 on ``(IoU − 0.5) / 0.5``, weight 5); stage 2's MIL scores (focal
   BCE, with random negatives of IoU < 0.3, weight 0.75) are multiplied by the min–max normalised
   predicted IoU before the top-7 merge gives the final pseudo box.
5. The detector (RPN and RoI head, losses × ``det_weight`` = 4 on the classification terms and the
   RoI regression, as the authors' ``det_loss_weight``) trains on the final pseudo boxes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from baselines.methods import MethodContext, Prediction
from baselines.methods.rfla import predict_variant, train_variant

#: The detector the method trains (a warm start loads a model of this kind).
DETECTOR = "faster_rcnn"


@dataclass(frozen=True)
class Config:
    """The authors' AI-TOD defaults; ``shake`` 0.1 is their low-noise config, 0.2 high-noise."""

    shake: float | None = None          # None: 0.1 for noise-20, 0.2 for noise-40 (from the file)
    base_ratios: tuple[float, ...] = (1.0, 1.2, 1.3, 0.8, 0.7)
    top_k: int = 7
    num_negatives: int = 200
    negative_iou: float = 0.3
    mil_weight: float = 0.25
    neg_weight: float = 0.75
    iou_weight: float = 5.0
    det_weight: float = 4.0
    sisd: bool = True
    rfla_rpn: bool = True
    hidden: int = 256
    max_bag_objects: int = 64
    class_agnostic: bool = True


# ----------------------------------------------------------------------------- mechanisms


def proposal_bag(boxes: Any, base_ratios: Sequence[float], shake: float | None) -> Any:
    """``(G, P, 4)`` proposals around ``boxes`` (G, 4): scaled by every (rw, rh) of
    ``base_ratios``², each also shifted by ``± shake`` × its width (x) and height (y)."""
    import torch

    ctr = (boxes[:, :2] + boxes[:, 2:]) / 2
    wh = boxes[:, 2:] - boxes[:, :2]
    r = torch.as_tensor(list(base_ratios), dtype=boxes.dtype, device=boxes.device)
    rw, rh = torch.meshgrid(r, r, indexing="ij")
    scale = torch.stack([rw.flatten(), rh.flatten()], dim=1)          # (R², 2)
    sizes = wh[:, None, :] * scale[None]                              # (G, R², 2)
    centres = [ctr[:, None, :].expand_as(sizes)]
    if shake is not None:
        for dx, dy in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            step = sizes * sizes.new_tensor([dx * shake, dy * shake])
            centres.append(ctr[:, None, :] + step)
    c = torch.stack(centres, dim=2)                                   # (G, R², S, 2)
    s = sizes[:, :, None, :].expand_as(c)
    return torch.cat([c - s / 2, c + s / 2], dim=-1).reshape(boxes.shape[0], -1, 4)


def bag_validity(bag: Any, height: int, width: int, min_inside: float = 0.7) -> Any:
    """Proposals with at least ``min_inside`` of their area inside the image (the authors' IoF)."""
    x0 = bag[..., 0].clamp(0, width)
    y0 = bag[..., 1].clamp(0, height)
    x1 = bag[..., 2].clamp(0, width)
    y1 = bag[..., 3].clamp(0, height)
    inside = (x1 - x0).clamp(min=0) * (y1 - y0).clamp(min=0)
    area = ((bag[..., 2] - bag[..., 0]) * (bag[..., 3] - bag[..., 1])).clamp(min=1e-6)
    return inside / area > min_inside


def aligned_iou(a: Any, b: Any) -> Any:
    """IoU of corresponding boxes of two equally shaped ``(..., 4)`` tensors."""
    import torch

    lt = torch.maximum(a[..., :2], b[..., :2])
    rb = torch.minimum(a[..., 2:], b[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[..., 2:] - a[..., :2]).clamp(min=0).prod(-1)
    area_b = (b[..., 2:] - b[..., :2]).clamp(min=0).prod(-1)
    return inter / (area_a + area_b - inter).clamp(min=1e-6)


def clean_quality(pseudo: Any, noisy: Any, clean: Any) -> tuple[Any, Any, Any]:
    """Per object: IoU of the pseudo box and of the noisy box with the clean box, and the clean
    box's side ``sqrt(w·h)`` (numpy arrays)."""
    wh = (clean[:, 2:] - clean[:, :2]).clamp(min=0)
    return (aligned_iou(pseudo, clean).cpu().numpy(), aligned_iou(noisy, clean).cpu().numpy(),
            wh.prod(-1).sqrt().cpu().numpy())


def clean_summary(records: Sequence[tuple[int, Any, Any, Any]], tail: float = 0.25,
                  very_tiny: float = 8.0) -> dict[str, Any] | None:
    """Mean IoU with the clean boxes of the pseudo and the noisy boxes over the last ``tail`` of
    the steps that recorded any (the pseudo boxes of early steps come from untrained branches),
    for every object and for very tiny ones (clean side below ``very_tiny`` px)."""
    if not records:
        return None
    last = max(r[0] for r in records)
    start = last - tail * (last + 1)
    kept = [r for r in records if r[0] >= start]
    pseudo, noisy, side = (np.concatenate([r[k] for r in kept]) for k in (1, 2, 3))

    def part(mask: Any) -> dict[str, Any]:
        if not mask.any():
            return {"objects": 0}
        return {"objects": int(mask.sum()), "pseudo": round(float(pseudo[mask].mean()), 4),
                "noisy": round(float(noisy[mask].mean()), 4),
                "pseudo_better": round(float((pseudo[mask] > noisy[mask]).mean()), 4)}

    return {"steps": f"{int(min(r[0] for r in kept))}-{last}", "all": part(side >= 0),
            "very_tiny": part(side < very_tiny), "others": part(side >= very_tiny)}


def identity_features(feats: Any) -> Any:
    """SISD's identity features: each proposal's feature plus its bag's (object's) mean feature,
    ``(G, P, D)`` → ``(G, P, D)``."""
    return feats + feats.mean(dim=1, keepdim=True)


def iou_targets(bag: Any, pseudo: Any) -> Any:
    """SISD's regression target of each proposal: ``(IoU(proposal, pseudo box) − 0.5) / 0.5``."""
    return (aligned_iou(bag, pseudo[:, None, :].expand_as(bag)) - 0.5) / 0.5


def sisd_confidence(pred: Any) -> Any:
    """Predicted IoUs back to [0, 1] (``· 0.5 + 0.5``) and min–max normalised within each bag:
    the spatial confidence that multiplies the MIL scores before the merge."""
    q = pred * 0.5 + 0.5
    lo, hi = q.min(dim=1, keepdim=True).values, q.max(dim=1, keepdim=True).values
    return (q - lo) / (hi - lo).clamp(min=1e-6)


def merge_topk(bag: Any, weights: Any, k: int) -> Any:
    """Weighted mean of each bag's ``k`` highest-weighted proposals: ``(G, 4)``."""
    w, idx = weights.topk(min(k, weights.shape[1]), dim=1)
    w = w / w.sum(dim=1, keepdim=True).clamp(min=1e-12)
    chosen = bag.gather(1, idx[..., None].expand(-1, -1, 4))
    return (chosen * w[..., None]).sum(1)


def bag_scores(cls_logits: Any, ins_logits: Any, valid: Any, labels: Any) -> tuple[Any, Any]:
    """Per-proposal class score (sigmoid) and instance score (softmax over the bag, valid only,
    re-normalised) of each bag's class: two ``(G, P)`` tensors."""
    import torch

    g = torch.arange(cls_logits.shape[0], device=cls_logits.device)
    cls = cls_logits.sigmoid()[g, :, labels] * valid
    ins = ins_logits.masked_fill(~valid[..., None], float("-inf")).softmax(dim=1)[g, :, labels]
    ins = torch.nan_to_num(ins) * valid
    ins = ins / ins.sum(dim=1, keepdim=True).clamp(min=1e-12)
    return cls, ins


def mil_loss(cls: Any, ins: Any, focal: bool) -> Any:
    """Bag-level loss: the bag's score ``Σ cls·ins`` should be 1 (BCE; focal-weighted with γ=2)."""
    import torch

    p = (cls * ins).sum(dim=1).clamp(1e-6, 1 - 1e-6)
    loss = -torch.log(p)
    if focal:
        loss = loss * (1 - p) ** 2
    return loss.mean()


def random_negatives(n: int, height: int, width: int, bag_boxes: Any, iou_thr: float,
                     generator: Any) -> tuple[Any, Any]:
    """``n`` random boxes over the image (±20 % margin) and whether each overlaps no bag proposal
    by IoU ≥ ``iou_thr`` (the authors' ``gen_negative_proposals``)."""
    import torch
    from torchvision.ops import box_iou

    u = torch.rand((4, n), generator=generator)
    x1 = -0.2 * width + u[0] * (1.2 * width)
    y1 = -0.2 * height + u[1] * (1.2 * height)
    x2 = x1 + u[2] * (1.2 * width - x1)
    y2 = y1 + u[3] * (1.2 * height - y1)
    neg = torch.stack([x1, y1, x2, y2], dim=1).to(bag_boxes.device)
    if bag_boxes.numel() == 0:
        return neg, torch.ones(n, dtype=torch.bool, device=neg.device)
    ok = (box_iou(neg, bag_boxes.reshape(-1, 4)) < iou_thr).all(dim=1)
    return neg, ok


def _heads(channels: int, num_classes: int, hidden: int) -> Any:
    """The training-only branches (authors' ``Shared2FCInstanceMILHeadEPLUS``, narrower)."""
    from torch import nn
    from torchvision.ops import MultiScaleRoIAlign

    def trunk() -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(channels * 49, hidden), nn.ReLU(),
                             nn.Linear(hidden, hidden), nn.ReLU())

    return nn.ModuleDict({
        "trunk": trunk(),                               # shared by SPSD and MIL (as the authors')
        "spsd_reg": nn.Linear(hidden, 4),
        "cls0": nn.Linear(hidden, num_classes), "ins0": nn.Linear(hidden, num_classes),
        "reg0": nn.Linear(hidden, 4),
        "cls1": nn.Linear(hidden, num_classes), "ins1": nn.Linear(hidden, num_classes),
        "iou_trunk": trunk(), "iou": nn.Linear(hidden, 1),
    }), MultiScaleRoIAlign(["0", "1", "2", "3"], 7, 2)


def make_step(cfg: Config, shake: float | None, plan: Any, seed: int, device: str) -> Any:
    """``make_step`` for :func:`baselines.methods.rfla.train_variant` (SSD-Det's training step)."""

    def factory(model: Any, samples: list[Any], spec: Any) -> tuple[Any, Any, Any, Any]:
        import torch
        import torch.nn.functional as F
        from torch import nn
        from torchvision.models.detection._utils import BoxCoder

        from baselines.data import training_batch

        heads, pool = _heads(spec.fpn_channels, spec.num_classes, cfg.hidden)
        trainer = nn.ModuleDict({"detector": model, "ssd": heads}).to(device)
        coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
        counters: dict[str, Any] = {"pseudo_shift": [], "objects": 0, "clean": []}

        def features(feats: Any, boxes: Any, sizes: Any) -> Any:
            flat = [b.reshape(-1, 4) for b in boxes]
            return pool(feats, flat, sizes)

        def step(it: int) -> Mapping[str, Any]:
            images, targets = training_batch(samples, it, batch_size=plan.batch_size,
                                             crop=plan.crop, seed=seed, device=device,
                                             augment=plan.augment, clean=True)
            clean = [t.pop("clean_boxes", None) for t in targets]
            images_t, targets_t = model.transform(images, targets)
            feats = model.backbone(images_t.tensors)
            sizes = images_t.image_sizes
            gen = torch.Generator().manual_seed(seed * 1_000_003 + it)
            losses: dict[str, Any] = {}
            pseudo_targets = []
            terms = {"spsd": [], "mil0": [], "reg0": [], "mil1": [], "neg": [], "iou": []}
            for n, tgt in enumerate(targets_t):
                boxes, labels = tgt["boxes"], tgt["labels"] - 1
                h, w = sizes[n]
                if boxes.shape[0] == 0:
                    pseudo_targets.append(tgt)
                    continue
                sel = torch.arange(boxes.shape[0], device=boxes.device)
                if boxes.shape[0] > cfg.max_bag_objects:   # CPU: bags for a random subset only
                    sel = torch.randperm(boxes.shape[0], generator=gen)[:cfg.max_bag_objects]
                    sel = sel.to(boxes.device)
                gt, lab = boxes[sel], labels[sel]
                one = {k: v[n:n + 1] for k, v in feats.items()}
                sz = [sizes[n]]
                bag = proposal_bag(gt, cfg.base_ratios, shake)                   # (G, P, 4)
                g_n, p_n = bag.shape[:2]
                valid = bag_validity(bag, h, w)
                # SPSD: regress the bag onto the noisy box; the predictions are the refined bag.
                f = heads["trunk"](features(one, [bag], sz))
                d = heads["spsd_reg"](f)
                target = coder.encode_single(gt[:, None, :].expand_as(bag).reshape(-1, 4),
                                             bag.reshape(-1, 4))
                terms["spsd"].append(F.l1_loss(d, target))
                refined = coder.decode_single(d.detach(), bag.reshape(-1, 4)).reshape(g_n, p_n, 4)
                # MIL stage 1 on the refined bag.
                f0 = heads["trunk"](features(one, [refined], sz))
                cls0, ins0 = bag_scores(heads["cls0"](f0).reshape(g_n, p_n, -1),
                                        heads["ins0"](f0).reshape(g_n, p_n, -1), valid, lab)
                terms["mil0"].append(mil_loss(cls0, ins0, focal=False))
                dyn0 = (cls0 * ins0).detach()
                pseudo0 = merge_topk(refined, dyn0, cfg.top_k)
                pseudo0 = _clip(pseudo0, h, w)
                r0 = heads["reg0"](f0)
                t0 = coder.encode_single(pseudo0[:, None, :].expand_as(refined).reshape(-1, 4),
                                         refined.reshape(-1, 4))
                terms["reg0"].append((F.l1_loss(r0, t0, reduction="none").sum(1)
                                      * dyn0.reshape(-1)).sum() / max(1, g_n * p_n))
                bag1 = coder.decode_single(r0.detach(), refined.reshape(-1, 4)).reshape(g_n, p_n, 4)
                valid1 = bag_validity(bag1, h, w)
                # MIL stage 2 (+ SISD) on the regressed bag.
                f1 = heads["trunk"](features(one, [bag1], sz))
                cls1, ins1 = bag_scores(heads["cls1"](f1).reshape(g_n, p_n, -1),
                                        heads["ins1"](f1).reshape(g_n, p_n, -1), valid1, lab)
                terms["mil1"].append(mil_loss(cls1, ins1, focal=True))
                neg, ok = random_negatives(cfg.num_negatives, h, w, bag1, cfg.negative_iou, gen)
                fn = heads["trunk"](features(one, [neg], sz))
                pn = heads["cls1"](fn).sigmoid().clamp(1e-6, 1 - 1e-6)
                neg_l = (-(1 - pn).log() * pn ** 2).sum(1) * ok
                terms["neg"].append(cfg.neg_weight * neg_l.sum() / max(1, g_n))
                dyn1 = (cls1 * ins1).detach()
                if cfg.sisd:
                    fo = heads["iou_trunk"](features(one, [bag1], sz)).reshape(g_n, p_n, -1)
                    pred_iou = heads["iou"](identity_features(fo)).squeeze(-1)
                    terms["iou"].append(F.smooth_l1_loss(pred_iou, iou_targets(bag1, pseudo0)))
                    dyn1 = dyn1 * sisd_confidence(pred_iou.detach())
                pseudo1 = _clip(merge_topk(bag1, dyn1 + 1e-12 * valid1, cfg.top_k), h, w)
                counters["pseudo_shift"].append(float((pseudo1 - gt).abs().mean()))
                counters["objects"] += int(g_n)
                if clean[n] is not None and tuple(images[n].shape[-2:]) == tuple(sizes[n]):
                    # a noisy-box variant (and no resize): how far from the truth?
                    counters["clean"].append((it, *clean_quality(pseudo1.detach(), gt,
                                                                 clean[n][sel])))
                new_boxes = boxes.clone()
                new_boxes[sel] = pseudo1.detach()
                keep = ((new_boxes[:, 2] > new_boxes[:, 0] + 0.5)
                        & (new_boxes[:, 3] > new_boxes[:, 1] + 0.5))
                new_boxes = torch.where(keep[:, None], new_boxes, boxes)
                pseudo_targets.append({"boxes": new_boxes, "labels": tgt["labels"]})
            for key, vals in terms.items():
                if vals:
                    weight = cfg.iou_weight if key == "iou" else cfg.mil_weight
                    losses[f"ssd_{key}"] = weight * torch.stack(vals).mean()
            proposals, rpn_losses = model.rpn(images_t, feats, pseudo_targets)
            _, roi_losses = model.roi_heads(feats, proposals, sizes, pseudo_targets)
            losses["loss_objectness"] = cfg.det_weight * rpn_losses["loss_objectness"]
            losses["loss_rpn_box_reg"] = rpn_losses["loss_rpn_box_reg"]
            losses["loss_classifier"] = cfg.det_weight * roi_losses["loss_classifier"]
            losses["loss_box_reg"] = cfg.det_weight * roi_losses["loss_box_reg"]
            if not terms["spsd"]:   # no objects in the batch: keep every branch in the graph
                losses["ssd_idle"] = sum(p.sum() * 0.0 for p in heads.parameters())
            return losses

        def stats() -> dict[str, Any]:
            shifts = counters["pseudo_shift"]
            return {"ssd_det": {"mean_pseudo_box_shift_px": round(float(np.mean(shifts)), 3)
                                if shifts else None, "bag_objects": counters["objects"],
                                "shake": shake,
                                "iou_with_clean": clean_summary(counters["clean"])}}

        return trainer, step, None, stats

    return factory


def _clip(boxes: Any, h: int, w: int) -> Any:
    import torch

    return torch.stack([boxes[:, 0].clamp(0, w), boxes[:, 1].clamp(0, h),
                        boxes[:, 2].clamp(0, w), boxes[:, 3].clamp(0, h)], dim=1)


def default_shake(ctx: MethodContext, cfg: Config) -> float | None:
    """The bag's shake: the option, else 0.2 for 40 % box noise and 0.1 otherwise (authors')."""
    if cfg.shake is not None:
        return float(cfg.shake)
    return 0.2 if any(part.startswith("noise-40") for part in ctx.train_json.parts) else 0.1


def train(ctx: MethodContext) -> dict[str, Any]:
    """Train SSD-Det (Faster R-CNN [+ RFLA RPN] on SPSD/SISD-refined pseudo boxes)."""
    from baselines.assigners.rfla import RFLAConfig
    from baselines.methods.rfla import rfla_settings

    cfg = ctx.config(Config)
    shake = default_shake(ctx, cfg)
    variant = {"rfla": rfla_settings(RFLAConfig())} if cfg.rfla_rpn else {}
    return train_variant(ctx, method="ssd_det", model_name=DETECTOR, variant=variant,
                         class_agnostic=bool(cfg.class_agnostic),
                         make_step=make_step(cfg, shake, ctx.plan, ctx.seed, ctx.device),
                         extra_config={"ssd_det": asdict(cfg), "shake": shake},
                         notes={"ssd_det_config": {**asdict(cfg), "shake": shake}})


def predict(ctx: MethodContext) -> list[Prediction]:
    """Detections of every image of ``ctx.eval_json`` (the trained Faster R-CNN)."""
    return predict_variant(ctx)
