"""PseCo on torchvision's Faster R-CNN (semi-supervised rows 17, 20, 23).

Paper: G. Li, X. Li, Y. Wang, Y. Wu, D. Liang, S. Zhang, "PseCo: Pseudo Labeling and Consistency
Training for Semi-Supervised Object Detection", ECCV 2022 (arXiv 2203.16317).
Authors' code read: ligang-cs/PseCo@33b06eeebaf456213f7c2b0cb25122b81fa50897
(``ssod/models/PseCo_frcnn.py``, ``configs/PseCo/PseCo_faster_rcnn_r50_caffe_fpn_coco_180k.py`` and
its cross-entropy variant ``PseCo_faster_rcnn_celoss_...``). Our own code.

On top of the EMA teacher–student loop of :mod:`baselines.teacher` (weak view → teacher, strong
view → student, 1 labelled : 4 unlabelled, unsupervised weight 2.0, teacher momentum 0.999):

* **noisy pseudo-box learning** — the student's RoIs are the *teacher's* proposals mapped into the
  student view; **prediction-guided label assignment (PLA)**: a proposal is a candidate for the
  pseudo box its *teacher-refined* box overlaps with IoU ≥ 0.4; per pseudo box the candidates are
  ranked by √(IoU · teacher score of the box's class) and the top k are positive, k = ⌊Σ of the
  12 largest candidate IoUs⌋ (at least 1); every other proposal is background;
  **positive-proposal consistency voting (PCV)**: the regression weight of each positive is the
  mean IoU between the *student's* decoded boxes of all positives of its pseudo box and that box;
  the L1 box loss uses weights w² rescaled by Σw / Σw²;
* **multi-view scale-invariant learning** — *label level*: teacher and student views are drawn at
  independent random scales and the pseudo boxes follow the map between them; *feature level*: a
  third view, the student view downsampled 2×, goes through the same network with its pyramid
  shifted by one level (its P2 stands for the full view's P3), and learns the same RPN and RoI
  targets (losses ``*_v2``);
* pseudo boxes: teacher detections with score > 0.3, of which > 0.5 train the RPN and the RoIs;
  the **teacher** is the tested model (``inference_on="teacher"``).

Deliberate deviations are listed in ``docs/baselines.md`` (PseCo section).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from baselines.methods import MethodContext, Prediction, predict_saved

#: The detector the method trains (a warm start loads a model of this kind).
DETECTOR = "faster_rcnn"


@dataclass(frozen=True)
class Config:
    """PseCo's defaults (``semi_wrapper.train_cfg`` of the authors' 180k config)."""

    initial_score_thr: float = 0.3
    rpn_pseudo_thr: float = 0.5
    cls_pseudo_thr: float = 0.5
    min_pseudo_size: float = 0.0
    unsup_weight: float = 2.0
    pla_iou_thr: float = 0.4
    pla_candidate_topk: int = 12
    use_msl: bool = True
    ema_momentum: float = 0.999
    ema_reference_iters: int = 180_000  # the authors' schedule (cpu: the cap is scaled to it)
    sup_per_step: int = 1
    unsup_per_step: int = 4
    scale_range: tuple[float, float] = (0.5, 1.5)

    def __post_init__(self) -> None:
        object.__setattr__(self, "scale_range", tuple(float(v) for v in self.scale_range))


# ------------------------------------------------------------------ the distinctive mechanisms
def pla_assign(teacher_boxes: Any, teacher_scores: Any, areas: Any, gt_boxes: Any,
               gt_labels: Any, iou_thr: float = 0.4, topk: int = 12) -> Any:
    """Prediction-guided label assignment: the pseudo box index of every proposal (−1 = bg).

    Args:
        teacher_boxes: ``(N, 4)`` the teacher's refined box of each proposal (student frame).
        teacher_scores: ``(N, C)`` the teacher's class probabilities of each proposal (column =
            label).
        areas: ``(N,)`` areas of the proposals themselves (empty ones are never positive).
        gt_boxes, gt_labels: the pseudo boxes and their labels.
    """
    import torch
    from torchvision.ops import box_iou

    out = torch.full((len(teacher_boxes),), -1, dtype=torch.int64)
    if not len(gt_boxes) or not len(teacher_boxes):
        return out
    ious = box_iou(teacher_boxes, gt_boxes)
    best, arg = ious.max(dim=1)
    candidate = best >= iou_thr
    for g in torch.unique(arg[candidate]).tolist():
        idx = torch.where(candidate & (arg == g))[0]
        iou_g = ious[idx, g]
        cost = (iou_g * teacher_scores[idx, gt_labels[g]]).sqrt()
        k = max(1, int(torch.topk(iou_g, min(topk, len(idx))).values.sum()))
        chosen = idx[torch.argsort(cost, descending=True, stable=True)[:k]]
        out[chosen[areas[chosen] > 0]] = g
    return out


def aligned_iou(a: Any, b: Any) -> Any:
    """IoU of ``a[i]`` with ``b[i]`` (xyxy)."""
    lt = a[:, :2].maximum(b[:, :2])
    rb = a[:, 2:].minimum(b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=1)
    area_a = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(dim=1)
    area_b = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(dim=1)
    return inter / (area_a + area_b - inter).clamp(min=1e-6)


def pcv_weights(student_boxes: Any, gt_boxes: Any, gt_index: Any) -> Any:
    """Positive-proposal consistency voting: for each positive, the mean IoU of all positives of
    its pseudo box. Inputs are aligned per positive: the student's decoded box, the pseudo box it
    is assigned to, and that pseudo box's index."""
    import torch

    if not len(student_boxes):
        return student_boxes.new_zeros(0)
    iou = aligned_iou(student_boxes, gt_boxes)
    out = torch.zeros_like(iou)
    for g in torch.unique(gt_index).tolist():
        sel = gt_index == g
        out[sel] = iou[sel].mean()
    return out


def shifted_anchor_generator(model: Any) -> Any:
    """Anchors for the 2×-downsampled view: its level i stands for the full view's level i + 1,
    so each level gets the next level's anchor size (16–256 px in full-view pixels)."""
    from torchvision.models.detection.anchor_utils import AnchorGenerator

    gen = model.rpn.anchor_generator
    sizes = tuple((2 * s[0],) for s in gen.sizes)
    return AnchorGenerator(sizes, gen.aspect_ratios)


# -------------------------------------------------------------------------------- one step
def _rpn_loss_on(model: Any, images: Any, features: dict[str, Any], anchor_gen: Any,
                 targets: list[dict[str, Any]]) -> tuple[Any, Any]:
    from torchvision.models.detection.rpn import concat_box_prediction_layers

    feats = list(features.values())
    objectness, deltas = model.rpn.head(feats)
    anchors = anchor_gen(images, feats)
    objectness, deltas = concat_box_prediction_layers(objectness, deltas)
    labels, matched = model.rpn.assign_targets_to_anchors(anchors, targets)
    reg_targets = model.rpn.box_coder.encode(matched, anchors)
    return model.rpn.compute_loss(objectness, deltas, labels, reg_targets)


def _roi_losses(model: Any, features: Any, rois: list[Any], sizes: list[Any], labels: Any,
                targets: Any, gt_index: Any, gt_boxes: Any, pooler: Any = None) -> tuple[Any, Any]:
    """Cross-entropy over sampled RoIs and the PCV-weighted L1 box loss."""
    import torch
    import torch.nn.functional as F

    from baselines.teacher import box_outputs

    logits, deltas = box_outputs(model, features, rois, sizes, pooler)
    loss_cls = F.cross_entropy(logits, labels)
    pos = torch.where(labels > 0)[0]
    if not len(pos):
        return loss_cls, deltas.sum() * 0.0
    pos_deltas = deltas.reshape(len(labels), -1, 4)[pos, labels[pos]]
    with torch.no_grad():
        decoded = model.roi_heads.box_coder.decode_single(pos_deltas.detach(),
                                                          torch.cat(rois)[pos])
        w = pcv_weights(decoded, gt_boxes[pos], gt_index[pos])
        w2 = w.pow(2)
        factor = w.sum() / w2.sum().clamp(min=1e-12)
    l1 = F.l1_loss(pos_deltas, targets[pos], reduction="none").sum(dim=1)
    return loss_cls, factor * (w2 * l1).sum() / max(len(labels), 1)


def unsup_losses(student: Any, teacher: Any, weak: list[Any], strong: list[Any], cfg: Config,
                 stats: dict[str, float]) -> dict[str, Any]:
    """PseCo's unsupervised losses for one unlabelled batch."""
    import torch
    import torch.nn.functional as F
    from torchvision.ops import MultiScaleRoIAlign

    from baselines.augment import map_boxes
    from baselines.teacher import box_outputs, filter_pseudo, rcnn_teacher

    t = rcnn_teacher(teacher, weak)
    with torch.no_grad():
        t_logits, t_deltas = box_outputs(teacher, t["features"], t["proposals"],
                                         t["images"].image_sizes)
        t_probs = t_logits.softmax(dim=1)
        t_labels = t_probs[:, 1:].argmax(dim=1) + 1
        t_boxes = teacher.roi_heads.box_coder.decode(t_deltas, t["proposals"])
        t_boxes = t_boxes[torch.arange(len(t_labels)), t_labels]
    per_image = [len(p) for p in t["proposals"]]
    t_probs, t_boxes = t_probs.split(per_image), t_boxes.split(per_image)

    rpn_t, rois, labels, reg_targets, gt_index, gt_matched = [], [], [], [], [], []
    for i, view in enumerate(strong):
        m = view.params.matrix(view.size)
        det = t["detections"][i]
        keep = filter_pseudo(det["boxes"], det["scores"], cfg.initial_score_thr,
                             cfg.min_pseudo_size)
        boxes, kept = view.to_student(det["boxes"][keep])
        scores, plabels = det["scores"][keep][kept], det["labels"][keep][kept]
        rpn_mask, cls_mask = scores > cfg.rpn_pseudo_thr, scores > cfg.cls_pseudo_thr
        rpn_t.append({"boxes": boxes[rpn_mask], "labels": plabels[rpn_mask]})
        gt_b, gt_l = boxes[cls_mask], plabels[cls_mask]
        stats["pseudo_initial"] += int(keep.sum())
        stats["pseudo_cls"] += len(gt_b)
        props = map_boxes(t["proposals"][i], m, view.size)
        areas = (props[:, 2] - props[:, 0]) * (props[:, 3] - props[:, 1])
        assigned = pla_assign(map_boxes(t_boxes[i], m, view.size), t_probs[i], areas, gt_b, gt_l,
                              cfg.pla_iou_thr, cfg.pla_candidate_topk)
        lab = torch.where(assigned >= 0, gt_l[assigned.clamp(min=0)] if len(gt_l) else 0, 0)
        (pos_mask,), (neg_mask,) = student.roi_heads.fg_bg_sampler([lab])
        sel = torch.where(pos_mask | neg_mask)[0]
        stats["positives"] += int(pos_mask.sum())
        matched = (gt_b[assigned[sel].clamp(min=0)] if len(gt_b)
                   else props.new_zeros(len(sel), 4))
        rois.append(props[sel])
        labels.append(lab[sel])
        gt_index.append(assigned[sel].clamp(min=0) + 10_000 * i)  # unique per image
        gt_matched.append(matched)
        reg_targets.append(student.roi_heads.box_coder.encode_single(matched, props[sel]))
    stats["unlabeled_images"] += len(weak)
    labels_t, reg_t = torch.cat(labels), torch.cat(reg_targets)
    idx_t, gtb_t = torch.cat(gt_index), torch.cat(gt_matched)

    images, _ = student.transform([v.image for v in strong])
    feats = student.backbone(images.tensors)
    _, rpn_losses = student.rpn(images, feats, rpn_t)
    sizes = images.image_sizes
    loss_cls, loss_box = _roi_losses(student, feats, rois, sizes, labels_t, reg_t, idx_t, gtb_t)
    out = {"loss_objectness": rpn_losses["loss_objectness"],
           "loss_rpn_box_reg": rpn_losses["loss_rpn_box_reg"],
           "loss_classifier": loss_cls, "loss_box_reg": loss_box}
    if cfg.use_msl:
        small = F.interpolate(images.tensors, scale_factor=0.5, mode="bilinear",
                              align_corners=False)
        feats2 = student.backbone(small)
        obj2, reg2 = _rpn_loss_on(student, images, feats2, shifted_anchor_generator(student),
                                  rpn_t)
        names = [k for k in feats2 if k != "pool"]
        pooler = MultiScaleRoIAlign(names, 7, 2)  # scales follow the full view's coordinates
        cls2, box2 = _roi_losses(student, feats2, rois, sizes, labels_t, reg_t, idx_t, gtb_t,
                                 pooler)
        out.update({"loss_objectness_v2": obj2, "loss_rpn_box_reg_v2": reg2,
                    "loss_classifier_v2": cls2, "loss_box_reg_v2": box2})
    return out


def train(ctx: MethodContext) -> dict[str, Any]:
    """Train PseCo (resumable; reuses a finished model with an unchanged configuration)."""
    from baselines.teacher import train_semi_faster_rcnn

    return train_semi_faster_rcnn(ctx, "pseco", ctx.config(Config), unsup_losses,
                                  ("pseudo_initial", "pseudo_cls", "positives"),
                                  test_teacher=True)


def predict(ctx: MethodContext) -> list[Prediction]:
    """Detections of the trained EMA teacher on every image of ``ctx.eval_json``."""
    return predict_saved(ctx)
