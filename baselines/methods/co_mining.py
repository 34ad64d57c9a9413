"""Co-mining on torchvision's RetinaNet (sparse-annotation rows 25, 28, 31).

Paper: T. Wang, T. Yang, J. Cao, X. Zhang, "Co-mining: Self-Supervised Learning for Sparsely
Annotated Object Detection", AAAI 2021 (arXiv 2012.01950).
Authors' code read: megvii-research/Co-mining@624df6dd3263f5a7621ad2988f6dc9553b753a3c
(``retinanet.res50.comining.score.05.extreme/{retinanet.py,coco.py,config.py}``). Our own code.

A Siamese RetinaNet: every sparsely annotated training image is seen in two views — the image
(crop and flip) and the same image colour-jittered (``ColorJitter(0.8, 0.8, 0.8, 0.2)`` applied
with probability 0.8) — through one network with shared weights. Without gradient, each branch's
detections with score > 0.5 (the authors' ``PSEUDO_SCORE_THRES`` for the one-annotation
"extreme" setting that TinySet's k-shot generalises; 0.6 in their easy/hard settings) after NMS
0.5 are **co-generated pseudo labels for the other branch**: those overlapping an annotated object
of their class with IoU > 0.4 (``MATCHING_IOU_THRES``) are dropped (the object is annotated
already), the rest join that branch's targets as unannotated objects mined. Both branches' focal
and box losses are summed. The tested model is the (shared) network.

Deliberate deviations are listed in ``docs/baselines.md`` (Co-mining section).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from baselines.methods import MethodContext, Prediction, predict_saved

#: The detector the method trains (a warm start loads a model of this kind).
DETECTOR = "retinanet"


@dataclass(frozen=True)
class Config:
    """Co-mining's defaults (the authors' RetinaNet configs)."""

    pseudo_score_thr: float = 0.5
    matching_iou_thr: float = 0.4
    colour_strength: float = 1.0
    colour_p: float = 0.8


def co_generated(gt_boxes: Any, gt_labels: Any, pred_boxes: Any, pred_labels: Any,
                 iou_thr: float = 0.4) -> tuple[Any, Any, Any]:
    """A branch's targets: the annotations plus the other branch's predictions that overlap no
    annotated object of their class with IoU > ``iou_thr``; also returns the kept mask."""
    import torch
    from torchvision.ops import box_iou

    if len(gt_boxes) and len(pred_boxes):
        same = gt_labels[:, None] == pred_labels[None, :]
        annotated = ((box_iou(gt_boxes, pred_boxes) > iou_thr) & same).any(dim=0)
    else:
        annotated = torch.zeros(len(pred_boxes), dtype=torch.bool)
    keep = ~annotated
    return (torch.cat([gt_boxes, pred_boxes[keep]]), torch.cat([gt_labels, pred_labels[keep]]),
            keep)


def retina_detections(model: Any, images: Any, features: list[Any], head: dict[str, Any],
                      anchors: list[Any]) -> list[dict[str, Any]]:
    """torchvision RetinaNet's post-processing of head outputs (per-level top-k, NMS)."""
    hw = [f.shape[-2] * f.shape[-1] for f in features]
    a = head["cls_logits"].shape[1] // sum(hw)
    per_level = [n * a for n in hw]
    split = {k: list(v.split(per_level, dim=1)) for k, v in head.items()}
    split_anchors = [list(x.split(per_level)) for x in anchors]
    return model.postprocess_detections(split, split_anchors, images.image_sizes)


def train(ctx: MethodContext) -> dict[str, Any]:
    """Train Co-mining (resumable; reuses a finished model with an unchanged configuration)."""
    import torch

    from baselines.augment import colour_jitter
    from baselines.data import step_rng
    from baselines.teacher import begin_run, draw, finish, seeded_detector, weak_view
    from baselines.train import fit

    cfg = ctx.config(Config)
    data, config, notes, done = begin_run(ctx, "co_mining", cfg, DETECTOR)
    if done is not None:
        return {**notes, **done}
    spec, model = seeded_detector(ctx, DETECTOR, data.num_classes)
    stats = {"mined": 0.0, "images": 0.0, "dropped_as_annotated": 0.0}
    plan = ctx.plan

    def step(it: int) -> dict[str, Any]:
        rng = step_rng(ctx.seed, it)
        views, views2, gts = [], [], []
        for s in draw(data.labeled, it, plan.batch_size, ctx.seed, 0):
            image, boxes, labels = weak_view(s, rng, plan, with_boxes=True)
            views.append(image.to(ctx.device))
            views2.append(colour_jitter(image, rng, cfg.colour_strength, cfg.colour_p)
                          .to(ctx.device))
            gts.append({"boxes": boxes.to(ctx.device), "labels": labels.to(ctx.device)})
        outs = []
        for imgs in (views, views2):
            images, _ = model.transform(imgs)
            feats = list(model.backbone(images.tensors).values())
            head = model.head(feats)
            outs.append((images, feats, head, model.anchor_generator(images, feats)))
        with torch.no_grad():
            preds = [retina_detections(model, im, f, {k: v.detach() for k, v in h.items()}, an)
                     for im, f, h, an in outs]
        losses = {}
        for b, (_, _, head, anchors) in enumerate(outs):
            other = preds[1 - b]
            targets = []
            for gt, p in zip(gts, other, strict=True):
                conf = p["scores"] > cfg.pseudo_score_thr
                boxes, labels, kept = co_generated(gt["boxes"], gt["labels"], p["boxes"][conf],
                                                   p["labels"][conf], cfg.matching_iou_thr)
                stats["mined"] += int(kept.sum())
                stats["dropped_as_annotated"] += int((~kept).sum())
                targets.append({"boxes": boxes, "labels": labels})
            branch = model.compute_loss(targets, head, anchors)
            losses.update({f"{k}_{b + 1}": v for k, v in branch.items()})
        stats["images"] += 2 * len(views)
        return losses

    result = fit(model, step, plan, ctx.work_dir, seed=ctx.seed, config=config)
    n = max(stats["images"], 1.0)
    train_stats = {**result.notes(), "tested_model": "the shared Siamese network",
                   "co_mining_per_branch_image": {
                       "mined": round(stats["mined"] / n, 2),
                       "dropped_as_annotated": round(stats["dropped_as_annotated"] / n, 2),
                       "steps_counted": "this process's steps (a resumed run counts the rest)"}}
    finish(ctx, model, spec, config, train_stats)
    return {**notes, **train_stats}


def predict(ctx: MethodContext) -> list[Prediction]:
    """Detections of the trained network on every image of ``ctx.eval_json``."""
    return predict_saved(ctx)
