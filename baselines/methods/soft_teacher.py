"""Soft Teacher on torchvision's Faster R-CNN (semi-supervised rows 16, 19, 22).

Paper: M. Xu, Z. Zhang, H. Hu, J. Wang, L. Wang, F. Wei, X. Bai, Z. Liu, "End-to-End
Semi-Supervised Object Detection with Soft Teacher", ICCV 2021 (arXiv 2106.09018).
Authors' code read: microsoft/SoftTeacher@0423bb2fe43f4fbe0e6704b1011d865cc3d2fdbe
(``ssod/models/soft_teacher.py``, ``configs/soft_teacher/base.py``); the mmdet 3.3.0 port's
settings (``../shared/reference/methods.md`` §3) are the same numbers. Our own code.

One step (end to end, as the paper): a labelled batch trains the student as usual; an unlabelled
batch is seen twice — the EMA teacher predicts on the weak view, the student learns from the
strong view against the teacher's boxes mapped into it:

* pseudo boxes: teacher detections with score > 0.5 (initial filter); the RPN and the RoI
  classifier learn from those with score > 0.9;
* **soft teacher**: every sampled RoI the pseudo boxes make *background* is weighted by the
  teacher's background probability of that RoI (scored by the teacher on its own view, the RoI
  mapped back), positives by 1, and the classification loss is divided by the sum of the weights;
* **box jittering**: each pseudo box is jittered 10 times (offsets ~ N(0, (0.06·side)²)), refined
  by the teacher's box head; the standard deviation of the refined boxes, relative to the mean
  box's width/height and averaged over the four sides, must be < 0.02 for the box to train the
  student's box regression (a separate RoI sampling against those boxes, as the authors do);
* unsupervised losses are weighted 4.0; 1 labelled : 4 unlabelled images per step; teacher EMA
  momentum 0.999; the student is the tested model.

Deliberate deviations are listed in ``docs/baselines.md`` (Soft Teacher section).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from baselines.methods import MethodContext, Prediction, predict_saved

#: The detector the method trains (a warm start loads a model of this kind).
DETECTOR = "faster_rcnn"


@dataclass(frozen=True)
class Config:
    """Soft Teacher's defaults (``semi_wrapper.train_cfg`` of the authors' base config)."""

    initial_score_thr: float = 0.5
    rpn_pseudo_thr: float = 0.9
    cls_pseudo_thr: float = 0.9
    reg_uncertainty_thr: float = 0.02
    jitter_times: int = 10
    jitter_scale: float = 0.06
    min_pseudo_size: float = 0.0
    unsup_weight: float = 4.0
    ema_momentum: float = 0.999
    ema_reference_iters: int = 180_000  # the authors' schedule (cpu: the cap is scaled to it)
    sup_per_step: int = 1
    unsup_per_step: int = 4
    scale_range: tuple[float, float] = (0.5, 1.5)

    def __post_init__(self) -> None:
        object.__setattr__(self, "scale_range", tuple(float(v) for v in self.scale_range))


# ------------------------------------------------------------------ the distinctive mechanisms
def soft_weights(labels: Any, bg_scores: Any) -> Any:
    """Per-RoI classification weights: 1 for foreground RoIs, the teacher's background
    probability for background ones (label 0 in torchvision)."""
    import torch

    return torch.where(labels == 0, bg_scores.to(torch.float32), torch.ones_like(bg_scores))


def jitter_boxes(boxes: Any, times: int, frac: float) -> Any:
    """``times`` jittered copies ``(times, N, 4)``: each side moved by N(0, (frac·side)²), where
    side is the box's width for x₀/x₁ and height for y₀/y₁ (at least 1 px); torch's generator."""
    import torch

    wh = (boxes[:, 2:4] - boxes[:, 0:2]).clamp(min=1.0)
    sigma = (wh.repeat(1, 2) * frac)[None]  # (1, N, 4): w, h, w, h
    return boxes[None] + torch.randn(times, *boxes.shape, dtype=boxes.dtype) * sigma


def box_uncertainty(refined: Any) -> Any:
    """Regression uncertainty of each box from its refined jitters ``(times, N, 4)``: the
    standard deviation over jitters (unbiased), divided by the mean box's width (x) or height (y)
    (at least 1 px), averaged over the four sides."""
    std = refined.std(dim=0)
    mean = refined.mean(dim=0)
    wh = (mean[:, 2:4] - mean[:, 0:2]).clamp(min=1.0)
    return (std / wh.repeat(1, 2)).mean(dim=1)


# -------------------------------------------------------------------------------- one step
def _teacher_pseudo(teacher: Any, weak: list[Any], cfg: Config) -> tuple[dict, list[dict]]:
    """Teacher outputs and, per image, pseudo boxes (score > initial thr) with their scores,
    labels and jitter uncertainty (teacher frame)."""
    import torch

    from baselines.teacher import box_outputs, decode_for_labels, filter_pseudo, rcnn_teacher

    out = rcnn_teacher(teacher, weak)
    pseudo = []
    for i, det in enumerate(out["detections"]):
        keep = filter_pseudo(det["boxes"], det["scores"], cfg.initial_score_thr,
                             cfg.min_pseudo_size)
        boxes, scores, labels = det["boxes"][keep], det["scores"][keep], det["labels"][keep]
        unc = boxes.new_zeros(len(boxes))
        if len(boxes):
            jit = jitter_boxes(boxes, cfg.jitter_times, cfg.jitter_scale).reshape(-1, 4)
            size = out["images"].image_sizes[i]
            with torch.no_grad():
                feats = {k: v[i:i + 1] for k, v in out["features"].items()}
                _, deltas = box_outputs(teacher, feats, [jit], [size])
                refined = decode_for_labels(teacher, deltas, [jit],
                                            labels.repeat(cfg.jitter_times))
            unc = box_uncertainty(refined.reshape(cfg.jitter_times, len(boxes), 4))
        pseudo.append({"boxes": boxes, "scores": scores, "labels": labels, "unc": unc})
    return out, pseudo


def unsup_losses(student: Any, teacher: Any, weak: list[Any], strong: list[Any], cfg: Config,
                 stats: dict[str, float]) -> dict[str, Any]:
    """Soft Teacher's unsupervised losses for one unlabelled batch (weak → teacher, strong →
    student); ``stats`` accumulates pseudo-label counts."""
    import torch

    from baselines.teacher import box_outputs, box_regression_loss, sample_rois, weighted_ce

    t_out, pseudo = _teacher_pseudo(teacher, weak, cfg)
    rpn_t, cls_t, reg_t = [], [], []
    for view, p in zip(strong, pseudo, strict=True):
        boxes, kept = view.to_student(p["boxes"])
        scores, labels, unc = p["scores"][kept], p["labels"][kept], p["unc"][kept]
        for dest, mask in ((rpn_t, scores > cfg.rpn_pseudo_thr),
                           (cls_t, scores > cfg.cls_pseudo_thr),
                           (reg_t, unc < cfg.reg_uncertainty_thr)):
            dest.append({"boxes": boxes[mask], "labels": labels[mask]})
    stats["pseudo_initial"] += sum(len(p["boxes"]) for p in pseudo)
    stats["pseudo_cls"] += sum(len(t["boxes"]) for t in cls_t)
    stats["pseudo_reg"] += sum(len(t["boxes"]) for t in reg_t)
    stats["unlabeled_images"] += len(weak)

    images, _ = student.transform([v.image for v in strong])
    feats = student.backbone(images.tensors)
    proposals, rpn_losses = student.rpn(images, feats, rpn_t)
    sizes = images.image_sizes

    props, labels, _, _ = sample_rois(student, proposals, cls_t)
    logits, _ = box_outputs(student, feats, props, sizes)
    with torch.no_grad():  # the teacher's background probability of the same RoIs
        in_teacher = [v.to_teacher(p) for v, p in zip(strong, props, strict=True)]
        t_logits, _ = box_outputs(teacher, t_out["features"], in_teacher,
                                  t_out["images"].image_sizes)
        bg = t_logits.softmax(dim=1)[:, 0]
    loss_cls = weighted_ce(logits, labels, soft_weights(labels, bg))

    props_r, labels_r, targets_r, _ = sample_rois(student, proposals, reg_t)
    _, deltas = box_outputs(student, feats, props_r, sizes)
    loss_box = box_regression_loss(deltas, labels_r, targets_r)
    return {"loss_objectness": rpn_losses["loss_objectness"],
            "loss_rpn_box_reg": rpn_losses["loss_rpn_box_reg"],
            "loss_classifier": loss_cls, "loss_box_reg": loss_box}


def train(ctx: MethodContext) -> dict[str, Any]:
    """Train Soft Teacher (resumable; reuses a finished model with an unchanged configuration)."""
    from baselines.teacher import train_semi_faster_rcnn

    return train_semi_faster_rcnn(ctx, "soft_teacher", ctx.config(Config), unsup_losses,
                                  ("pseudo_initial", "pseudo_cls", "pseudo_reg"),
                                  test_teacher=False)


def predict(ctx: MethodContext) -> list[Prediction]:
    """Detections of the trained student on every image of ``ctx.eval_json``."""
    return predict_saved(ctx)
