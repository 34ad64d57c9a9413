"""Calibrated Teacher on torchvision's RetinaNet (sparse-annotation rows 26, 29, 32).

Paper: H. Wang, L. Liu, B. Zhang, J. Zhang, W. Zhang, Z. Gan, Y. Wang, C. Wang, H. Wang,
"Calibrated Teacher for Sparsely Annotated Object Detection", AAAI 2023 (arXiv 2303.07582).
Authors' code read: Whileherham/CalibratedTeacher@0a27de8890389b0094ab89702eba0fdd609a6063
(``src/models/cali_read_and_cali_full_100.py``, ``src/models/whh_utils.py``,
``src/models/retinahead_adaptnegweiht2_focaliou.py``, ``configs/WHH_cali_retina*/``). Our own code.

An EMA teacher (momentum 0.999) sees the weak view of each sparsely annotated image, the student
its strong view. The teacher's detections with score > 0.4 that are **not** an annotated object
(not: IoU > 0.6 with an annotation of their class, IoU > 0.75 with any, or ≥ 90 % of either box
inside the other with the same class) are mined as missing annotations and join the student's
targets — once the confidence is calibrated, and only those whose **calibrated** score is ≥ 0.7:

* **confidence calibration**: the teacher's detections that *do* fall on annotations are labelled
  1 if they match one (IoU > 0.75, same class), else 0; every ``calib_every`` steps a logistic
  (Platt) calibrator ``σ(a·logit(c) + b)`` is fitted by maximum likelihood to the pairs gathered
  since the last fit (the authors' netcal ``LogisticCalibration``, confidence as the only input),
  so the fixed 0.7 means the same precision however the teacher's raw scores drift;
* **focal-IoU (FIoU) weighting**, second stage (the authors' last 28k of 180k iterations,
  resumed from the first stage): every negative anchor's classification loss is weighted
  ``b + k(1 − b)·(−α·IoU^γ·log(1 − IoU))`` (α = 0.25, γ = 2, b = 0.5, k = 3), IoU = the best
  overlap of the anchor's *predicted* box with the (merged) targets, not detached;
* the student is the tested model.

Budget: stage 1 gets 152/180 of the plan, stage 2 (FIoU) the rest at a tenth of the learning rate
(the authors' stage 2 runs after their first decay). Deviations are listed in ``docs/baselines.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from baselines.methods import MethodContext, Prediction, predict_saved

#: The detector the method trains (a warm start loads a model of this kind).
DETECTOR = "retinanet"


@dataclass(frozen=True)
class Config:
    """Calibrated Teacher's defaults (``cali_04_07*.py``; see the docs for the two changed)."""

    ori_thr: float = 0.4
    strict_thr: float = 0.7
    mining_iou_thr: float = 0.6
    mining_min_size: float = 2.0
    calib_every: int = 50
    calib_tp_iou: float = 0.75
    ema_momentum: float = 0.999
    ema_reference_iters: int = 152_000  # the authors' stage 1 (cpu: the cap is scaled to it)
    stage1_fraction: float = 152 / 180
    fiou_alpha: float = 0.25
    fiou_gamma: float = 2.0
    fiou_bias: float = 0.5
    fiou_k: float = 3.0
    scale_range: tuple[float, float] = (0.5, 1.5)

    def __post_init__(self) -> None:
        object.__setattr__(self, "scale_range", tuple(float(v) for v in self.scale_range))


# ------------------------------------------------------------------ the distinctive mechanisms
def _ioa(a: Any, b: Any) -> Any:
    """Intersection over the area of each box of ``a`` (rows) with each of ``b`` (columns)."""
    lt = a[:, None, :2].maximum(b[None, :, :2])
    rb = a[:, None, 2:].minimum(b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=2)
    area = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(dim=1)
    return inter / area[:, None].clamp(min=1e-6)


def on_annotation(gt_boxes: Any, gt_labels: Any, det_boxes: Any, det_labels: Any,
                  iou_thr: float = 0.6) -> Any:
    """Mask of detections that fall on an annotated object (the authors' merge filter): IoU >
    ``iou_thr`` with the same class, IoU > 0.75 with any class, or either box ≥ 90 % inside the
    other (intersection over its own area > 0.9) with the same class."""
    import torch
    from torchvision.ops import box_iou

    if not len(gt_boxes) or not len(det_boxes):
        return torch.zeros(len(det_boxes), dtype=torch.bool)
    same = gt_labels[:, None] == det_labels[None, :]
    iou = box_iou(gt_boxes, det_boxes)
    hit = ((iou > iou_thr) & same) | (iou > 0.75)
    hit |= (_ioa(gt_boxes, det_boxes) > 0.9) & same
    hit |= (_ioa(det_boxes, gt_boxes).T > 0.9) & same
    return hit.any(dim=0)


def fit_platt(conf: np.ndarray, match: np.ndarray, iters: int = 50) -> tuple[float, float] | None:
    """Maximum-likelihood ``(a, b)`` of ``P(match) = σ(a·logit(c) + b)`` by Newton's method.

    Returns None when the pairs hold only one class (nothing to calibrate against).
    """
    match = np.asarray(match, np.float64)
    if match.size == 0 or match.min() == match.max():
        return None
    c = np.clip(np.asarray(conf, np.float64), 1e-6, 1 - 1e-6)
    x = np.stack([np.log(c / (1 - c)), np.ones_like(c)], axis=1)
    w = np.array([1.0, 0.0])
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(x @ w)))
        grad = x.T @ (p - match) + 1e-6 * w
        hess = (x * (p * (1 - p))[:, None]).T @ x + 1e-6 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-10:
            break
    return float(w[0]), float(w[1])


def calibrate(conf: Any, a: float, b: float) -> Any:
    """``σ(a·logit(c) + b)`` of a tensor of confidences."""
    c = conf.clamp(1e-6, 1 - 1e-6)
    return (a * (c / (1 - c)).log() + b).sigmoid()


def fiou_weight(iou: Any, alpha: float = 0.25, gamma: float = 2.0, bias: float = 0.5,
                k: float = 3.0) -> Any:
    """Focal-IoU weight of a negative anchor: ``b + k(1 − b)·(−α·IoU^γ·log(1 − IoU))``."""
    return bias + k * (1 - bias) * (-alpha * iou.pow(gamma) * (1.00001 - iou).log())


def _calibrator_class() -> type:
    from torch import nn

    class Calibrator(nn.Module):
        """The calibration map and the (confidence, match) pairs gathered since its last fit;
        its state travels in checkpoints (``get_extra_state``), so a resumed run refits alike."""

        def __init__(self) -> None:
            super().__init__()
            self.params: tuple[float, float] | None = None
            self.conf: list[float] = []
            self.match: list[float] = []
            self.fits = 0

        def add(self, conf: Any, match: Any) -> None:
            self.conf.extend(float(v) for v in conf.tolist())
            self.match.extend(float(v) for v in match.tolist())

        def refit(self) -> None:
            found = fit_platt(np.asarray(self.conf), np.asarray(self.match))
            if found is not None:
                self.params, self.fits = found, self.fits + 1
            self.conf, self.match = [], []

        def get_extra_state(self) -> Any:
            return {"params": self.params, "conf": self.conf, "match": self.match,
                    "fits": self.fits}

        def set_extra_state(self, state: Any) -> None:
            self.params = None if state["params"] is None else tuple(state["params"])
            self.conf, self.match = list(state["conf"]), list(state["match"])
            self.fits = int(state["fits"])

    return Calibrator


# -------------------------------------------------------------------------------- losses
def retina_losses(model: Any, images: Any, targets: list[dict[str, Any]], fiou: Config | None,
                  ) -> dict[str, Any]:
    """RetinaNet's losses; with ``fiou`` the negatives' focal terms are FIoU-weighted."""
    import torch
    from torchvision.ops import box_iou, sigmoid_focal_loss

    feats = list(model.backbone(images.tensors).values())
    head = model.head(feats)
    anchors = model.anchor_generator(images, feats)
    if fiou is None:
        return model.compute_loss(targets, head, anchors)
    matched = []
    for anc, t in zip(anchors, targets, strict=True):
        if t["boxes"].numel() == 0:
            matched.append(torch.full((anc.size(0),), -1, dtype=torch.int64))
        else:
            matched.append(model.proposal_matcher(box_iou(t["boxes"], anc)))
    reg = model.head.regression_head.compute_loss(targets, head, anchors, matched)
    total = []
    for i, (t, m) in enumerate(zip(targets, matched, strict=True)):
        logits = head["cls_logits"][i]
        fg = m >= 0
        target = torch.zeros_like(logits)
        if fg.any():
            target[fg, t["labels"][m[fg]]] = 1.0
        valid = m != model.proposal_matcher.BETWEEN_THRESHOLDS
        weights = torch.ones(len(m), dtype=logits.dtype)
        neg = m == model.proposal_matcher.BELOW_LOW_THRESHOLD
        if neg.any() and t["boxes"].numel():
            pred = model.box_coder.decode_single(head["bbox_regression"][i][neg], anchors[i][neg])
            iou = box_iou(pred, t["boxes"]).max(dim=1).values
            weights = weights.masked_scatter(neg, fiou_weight(
                iou, fiou.fiou_alpha, fiou.fiou_gamma, fiou.fiou_bias, fiou.fiou_k))
        elif neg.any():
            weights[neg] = fiou.fiou_bias
        focal = sigmoid_focal_loss(logits[valid], target[valid], reduction="none").sum(dim=1)
        total.append((focal * weights[valid]).sum() / max(1, int(fg.sum())))
    return {"classification": sum(total) / len(targets), "bbox_regression": reg}


# ---------------------------------------------------------------------------------- training
def train(ctx: MethodContext) -> dict[str, Any]:
    """Train Calibrated Teacher, both stages (resumable; reuses an unchanged finished model)."""
    import dataclasses

    import torch

    from baselines.augment import strong_view
    from baselines.data import step_rng
    from baselines.methods.co_mining import retina_detections
    from baselines.teacher import (
        begin_run,
        draw,
        ema_reference,
        ema_teacher,
        finish,
        seeded_detector,
        split_plan,
        weak_view,
    )
    from baselines.train import fit, fit_stage

    cfg = ctx.config(Config)
    data, config, notes, done = begin_run(ctx, "calibrated_teacher", cfg, DETECTOR)
    if done is not None:
        return {**notes, **done}
    spec, student = seeded_detector(ctx, DETECTOR, data.num_classes)
    ema = ema_teacher(student, cfg.ema_momentum, ema_reference(ctx, cfg.ema_reference_iters))
    calib = _calibrator_class()()
    stats = dict.fromkeys(("candidates", "mined", "images"), 0.0)
    plan1, plan2 = split_plan(ctx.plan, cfg.stage1_fraction)
    plan2 = dataclasses.replace(plan2, lr=plan2.lr * 0.1)

    def make_step(plan: Any, offset: int, use_fiou: bool) -> Any:
        def step(it: int) -> dict[str, Any]:
            g = it + offset  # the global step: views, sampling and calibration continue
            rng = step_rng(ctx.seed, g)
            weak, strong, gts = [], [], []
            for s in draw(data.labeled, g, plan.batch_size, ctx.seed, 0):
                image, boxes, labels = weak_view(s, rng, plan, with_boxes=True)
                view = strong_view(image.to(ctx.device), rng, cfg.scale_range)
                weak.append(image.to(ctx.device))
                strong.append(view)
                b, kept = view.to_student(boxes)
                gts.append({"boxes": b.to(ctx.device), "labels": labels[kept].to(ctx.device)})
            with torch.no_grad():
                t_images, _ = ema.model.transform(weak)
                t_feats = list(ema.model.backbone(t_images.tensors).values())
                t_head = ema.model.head(t_feats)
                dets = retina_detections(ema.model, t_images, t_feats, t_head,
                                         ema.model.anchor_generator(t_images, t_feats))
            targets = []
            for view, gt, det in zip(strong, gts, dets, strict=True):
                keep = det["scores"] > cfg.ori_thr
                boxes, kept = view.to_student(det["boxes"][keep])
                scores, labels = det["scores"][keep][kept], det["labels"][keep][kept]
                wh = boxes[:, 2:] - boxes[:, :2]
                big = (wh > cfg.mining_min_size).all(dim=1)
                boxes, scores, labels = boxes[big], scores[big], labels[big]
                on_gt = on_annotation(gt["boxes"], gt["labels"], boxes, labels,
                                      cfg.mining_iou_thr)
                # calibration pairs: detections on annotations, matched (1) or not (0)
                on_sparse = on_annotation(gt["boxes"], gt["labels"], boxes, labels, 0.5)
                if on_sparse.any():
                    from torchvision.ops import box_iou

                    iou = box_iou(gt["boxes"], boxes[on_sparse])
                    same = gt["labels"][:, None] == labels[on_sparse][None, :]
                    calib.add(scores[on_sparse], ((iou > cfg.calib_tp_iou) & same).any(dim=0))
                mined = ~on_gt
                stats["candidates"] += int(mined.sum())
                if calib.params is None:
                    mined = torch.zeros_like(mined)  # no mining before the first calibration
                else:
                    mined &= calibrate(scores, *calib.params) >= cfg.strict_thr
                stats["mined"] += int(mined.sum())
                targets.append({"boxes": torch.cat([gt["boxes"], boxes[mined]]),
                                "labels": torch.cat([gt["labels"], labels[mined]])})
            stats["images"] += len(weak)
            if (g + 1) % cfg.calib_every == 0:
                calib.refit()
            images, targets = student.transform([v.image for v in strong], targets)
            return retina_losses(student, images, targets, cfg if use_fiou else None)
        return step

    tracked = {"teacher": ema, "calibrator": calib}
    done1 = ctx.work_dir / "stage1.pt"  # a finished stage 1, so stage 2 resumes after it
    r1 = fit_stage(done1, student, make_step(plan1, 0, False), plan1, ctx.work_dir, seed=ctx.seed,
                   config={**config, "stage": 1}, tracked=tracked,
                   after_step=ema.after_step(student), checkpoint_name="checkpoint_stage1.pt")
    r2 = fit(student, make_step(plan2, r1.iterations, True), plan2, ctx.work_dir,
             seed=ctx.seed + 1, config={**config, "stage": 2}, tracked=tracked,
             after_step=ema.after_step(student), checkpoint_name="checkpoint_stage2.pt")
    n = max(stats["images"], 1.0)
    train_stats = {"iterations": r1.iterations + r2.iterations,
                   "stage1": r1.notes(), "stage2_fiou": r2.notes(),
                   "train_cpu_seconds": round(r1.cpu_seconds + r2.cpu_seconds, 1),
                   "first_loss": r1.first_loss, "final_loss": r2.final_loss,
                   "tested_model": "student", "calibrator_fits": calib.fits,
                   "ema_momentum_cap": round(float(ema.cap), 6),
                   "calibration": None if calib.params is None else
                   {"a": round(calib.params[0], 4), "b": round(calib.params[1], 4)},
                   "per_image": {"candidates": round(stats["candidates"] / n, 2),
                                 "mined": round(stats["mined"] / n, 2),
                                 "steps_counted": "this process's steps"}}
    finish(ctx, student, spec, config, train_stats)
    done1.unlink(missing_ok=True)
    return {**notes, **train_stats}


def predict(ctx: MethodContext) -> list[Prediction]:
    """Detections of the trained student on every image of ``ctx.eval_json``."""
    return predict_saved(ctx)
