"""The teacher–student engine shared by Soft Teacher, PseCo, Calibrated Teacher (and Point Teacher).

What every such method does the same way lives here once:

* :class:`EMATeacher` — the teacher is an exponential moving average of the student, updated after
  every optimiser step with the Mean Teacher hook's momentum ``min(m, 1 − 1/(t + 1))`` (t = the
  number of updates so far, so the first update copies the student; microsoft/SoftTeacher@0423bb2
  ``ssod/utils/hooks/mean_teacher.py``, ``momentum = 0.999, warm_up = 0``). Unlike that hook, the
  floating-point *buffers* (batch-norm statistics) are averaged too: the ``cpu`` schedule trains
  batch norm from scratch, where a teacher with its initial statistics would predict nothing.
  Under the ``cpu`` schedule the cap ``m`` is scaled to the run's length as the learning-rate
  schedule is (:func:`scaled_cap`): 0.999 averages over ~1,000 of the authors' 180k iterations,
  so a run of ``T`` steps averages over ``1000 · T / 180k`` of its own (at least one). Unscaled, a
  run of 10²–10³ steps has a teacher that is the plain mean of every student since random
  initialisation, whose pseudo boxes are noise (measured: ``docs/baselines.md``). A warm-started
  run (``init_checkpoint``) keeps the authors' cap (:func:`ema_reference`).
  It is passed to :func:`baselines.train.fit` as ``tracked={"teacher": ema}`` with
  ``after_step=ema.after_step(student)``, so checkpoints resume exactly.
* the data of a run (:func:`load_data`): labelled samples, unlabelled samples (their boxes are
  never read), class-agnostic labels by default as the paper evaluates;
* samplers at the papers' ratio (:func:`draw`: ``sup_per_step`` labelled and ``unsup_per_step``
  unlabelled images per step, 1 : 4 of 5 in Soft Teacher / PseCo's ``SemiBalanceSampler``), each a
  pure function of (seed, step, stream) like :func:`baselines.data.batch_indices`;
* views (:func:`weak_view`, :func:`labeled_view`; the student's strong view is
  :func:`baselines.augment.strong_view`), all in one frame: the training crop (or the whole tile
  resized to the plan's size), so the detectors' transform never rescales and teacher boxes,
  student boxes and targets share coordinates;
* pseudo-label filtering (:func:`filter_pseudo`, Soft Teacher's ``filter_invalid``: score strictly
  above a threshold, sides above a minimum);
* the pieces of torchvision's Faster R-CNN the methods recombine (:func:`rcnn_teacher`,
  :func:`box_outputs`, :func:`sample_rois`, :func:`box_regression_loss`, :func:`weighted_ce`);
* saving, reuse of a finished model whose configuration is unchanged, and notes
  (:func:`run_config`, :func:`reuse`, :func:`finish`).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from baselines.data import Sample, batch_indices, crop_patch, file_digest, load_samples
from baselines.supervised import init_from, weights_note
from tinyset_builder.errors import TinysetError


# ----------------------------------------------------------------------------------------- EMA
def ema_momentum(updates: int, momentum: float) -> float:
    """Momentum of the EMA update number ``updates`` (0-based): ``min(m, 1 − 1/(updates + 1))``."""
    return min(momentum, 1.0 - 1.0 / (updates + 1))


def scaled_cap(momentum: float, total: int, reference_iters: int) -> float:
    """The momentum cap of a ``total``-step run that keeps the averaging window
    ``1 / (1 − momentum)`` the same fraction of the run as in a ``reference_iters`` schedule
    (at least one step, i.e. a cap of 0: the teacher is the student)."""
    window = total / reference_iters / (1.0 - momentum)
    return max(0.0, 1.0 - 1.0 / max(window, 1.0))


def _ema_teacher_class() -> type:
    import torch
    from torch import nn

    class EMATeacher(nn.Module):
        """An exponential moving average of a student detector (see the module docstring)."""

        def __init__(self, student: nn.Module, momentum: float = 0.999,
                     reference_iters: int | None = None) -> None:
            super().__init__()
            self.model = copy.deepcopy(student)
            self.model.eval()
            for p in self.model.parameters():
                p.requires_grad_(False)
            self.momentum = momentum
            self.reference_iters = reference_iters
            self.register_buffer("updates", torch.zeros((), dtype=torch.int64))
            # The cap in use, fixed at the first update (negative: not yet known); a buffer so
            # that a resumed run keeps it.
            self.register_buffer("cap", torch.full((), -1.0, dtype=torch.float64))

        def train(self, mode: bool = True) -> EMATeacher:  # the teacher always predicts
            super().train(False)
            return self

        @torch.no_grad()
        def update(self, student: nn.Module, total: int | None = None) -> float:
            """One EMA step towards ``student``; returns the momentum used. ``total`` (the
            run's steps) scales the cap when the teacher has a ``reference_iters``."""
            if float(self.cap) < 0:
                scale = self.reference_iters is not None and total is not None
                self.cap.fill_(scaled_cap(self.momentum, total, self.reference_iters)
                               if scale else self.momentum)
            m = ema_momentum(int(self.updates), float(self.cap))
            for t, s in zip(self.model.parameters(), student.parameters(), strict=True):
                t.mul_(m).add_(s.detach(), alpha=1.0 - m)
            for t, s in zip(self.model.buffers(), student.buffers(), strict=True):
                if t.is_floating_point():
                    t.mul_(m).add_(s.detach(), alpha=1.0 - m)
                else:
                    t.copy_(s)
            self.updates += 1
            return m

        def after_step(self, student: nn.Module) -> Callable[[int, int], None]:
            """The ``after_step`` hook of :func:`baselines.train.fit`."""
            return lambda _it, total: self.update(student, total)

    return EMATeacher


def ema_teacher(student: Any, momentum: float = 0.999, reference_iters: int | None = None) -> Any:
    """A new :class:`EMATeacher` (the class is built lazily: torch is imported on first use);
    ``reference_iters`` (the authors' schedule length) scales its cap to the run's length."""
    global EMATeacher
    if "EMATeacher" not in globals():
        EMATeacher = _ema_teacher_class()
    return EMATeacher(student, momentum, reference_iters)


def ema_reference(ctx: Any, reference_iters: int) -> int | None:
    """``reference_iters`` under the ``cpu`` schedule (the cap is scaled), else None (the
    authors' cap as it is). A warm-started run (``init_checkpoint``) keeps the authors' cap: the
    scaling exists because a cold run's early students are random, and a warm run's are not."""
    warm = init_from(ctx.settings) is not None
    return reference_iters if ctx.plan.schedule == "cpu" and not warm else None


# ---------------------------------------------------------------------------------------- data
@dataclass(frozen=True)
class MethodData:
    """The images of a run: labelled (boxes used), unlabelled (boxes never read)."""

    labeled: list[Sample]
    unlabeled: list[Sample]
    counts: dict[str, int]
    num_classes: int
    class_agnostic: bool


def load_data(ctx: Any, *, unlabeled: bool) -> MethodData:
    """Samples of ``ctx`` (``unlabeled``: the semi setting's unlabelled part is required).

    Raises:
        TinysetError: no labelled images, or no unlabelled file where one is needed.
    """
    from tinyset_builder.io import read_json

    agnostic = bool(ctx.setting("class_agnostic", True))
    labeled, counts = load_samples(ctx.train_json, ctx.data_dir, agnostic)
    if not labeled:
        raise TinysetError(f"{ctx.train_json}: no images to train on")
    unl: list[Sample] = []
    if unlabeled:
        if ctx.unlabeled_json is None:
            raise TinysetError("this method needs unlabelled images (a semi-* setting)")
        found, _ = load_samples(ctx.unlabeled_json, ctx.data_dir, agnostic)
        # keep only what an unlabelled image is: its path (no box may leak into training)
        unl = [Sample(s.image_id, s.path, np.zeros((0, 4), np.float32), np.zeros(0, np.int64))
               for s in found]
        if not unl:
            raise TinysetError(f"{ctx.unlabeled_json}: no unlabelled images")
    counts = {**counts, "unlabeled_images": len(unl)}
    k = 1 if agnostic else len(read_json(ctx.train_json).get("categories", []))
    return MethodData(labeled, unl, counts, k, agnostic)


def draw(samples: Sequence[Sample], it: int, n: int, seed: int, stream: int) -> list[Sample]:
    """``n`` samples of step ``it`` from their own seeded epoch permutations (one per stream)."""
    if n <= 0 or not samples:
        return []
    return [samples[i] for i in batch_indices(len(samples), it, n, seed * 7919 + stream)]


def view_size(plan: Any) -> int:
    """Side of every training view: the crop, or the whole tile resized to the test size."""
    return int(plan.crop or plan.test_size)


def base_view(sample: Sample, rng: np.random.Generator, plan: Any, *, with_boxes: bool,
              ) -> tuple[Any, Any, Any]:
    """The crop (object-biased only when boxes may be used) or the resized tile, with its boxes."""
    import torch
    from torchvision.transforms.v2 import functional as F

    from baselines.data import read_tensor

    image = read_tensor(sample.path)
    boxes = sample.boxes if with_boxes else np.zeros((0, 4), np.float32)
    labels = sample.labels if with_boxes else np.zeros(0, np.int64)
    size = view_size(plan)
    if plan.crop is None:
        _, h, w = image.shape
        image = F.resize(image, [size, size], antialias=True)
        scale = np.array([size / w, size / h, size / w, size / h], np.float32)
        boxes = boxes * scale
    else:
        image, boxes, labels = crop_patch(image, boxes, labels, size, rng)
    return (image.contiguous(), torch.from_numpy(np.ascontiguousarray(boxes, np.float32)),
            torch.from_numpy(np.ascontiguousarray(labels, np.int64)))


def weak_view(sample: Sample, rng: np.random.Generator, plan: Any, *, with_boxes: bool,
              ) -> tuple[Any, Any, Any]:
    """The teacher's weak view: the base view flipped horizontally with probability 0.5."""
    from baselines.augment import hflip

    image, boxes, labels = base_view(sample, rng, plan, with_boxes=with_boxes)
    if rng.random() < 0.5:
        image, boxes = hflip(image, boxes)
    return image, boxes, labels


def labeled_view(sample: Sample, rng: np.random.Generator, plan: Any) -> tuple[Any, dict]:
    """The supervised branch's view (weak view plus one colour operation) and its target."""
    from baselines.augment import colour

    image, boxes, labels = weak_view(sample, rng, plan, with_boxes=True)
    return colour(image, rng), {"boxes": boxes, "labels": labels}


def filter_pseudo(boxes: Any, scores: Any, thr: float, min_size: float = 0.0) -> Any:
    """Mask of pseudo boxes whose score is strictly above ``thr`` and both sides above ``min_size``
    (Soft Teacher's ``filter_invalid``)."""
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    return (scores > thr) & (w > min_size) & (h > min_size)


# ------------------------------------------------------------------------ Faster R-CNN pieces
def rcnn_teacher(teacher: Any, images: list[Any]) -> dict[str, Any]:
    """A Faster R-CNN teacher on its views: features, RPN proposals and detections (no grad)."""
    import torch

    with torch.no_grad():
        image_list, _ = teacher.transform(images)
        features = teacher.backbone(image_list.tensors)
        proposals, _ = teacher.rpn(image_list, features)
        detections, _ = teacher.roi_heads(features, proposals, image_list.image_sizes)
    return {"images": image_list, "features": features, "proposals": proposals,
            "detections": detections}


def box_outputs(model: Any, features: Mapping[str, Any], boxes: list[Any],
                image_sizes: list[tuple[int, int]], pooler: Any = None) -> tuple[Any, Any]:
    """Class logits and raw box deltas of the box head for given boxes (all images concatenated)."""
    pool = pooler or model.roi_heads.box_roi_pool
    x = model.roi_heads.box_head(pool(features, boxes, image_sizes))
    return model.roi_heads.box_predictor(x)


def decode_for_labels(model: Any, deltas: Any, boxes: list[Any], labels: Any) -> Any:
    """Boxes decoded from class-specific deltas, for one label per box."""
    import torch

    decoded = model.roi_heads.box_coder.decode(deltas, boxes)  # (N, K+1, 4)
    return decoded[torch.arange(len(labels)), labels]


def sample_rois(model: Any, proposals: list[Any], targets: list[dict[str, Any]],
                ) -> tuple[list[Any], Any, Any, list[Any]]:
    """torchvision's RoI sampling against ``targets`` (adds the targets as proposals)."""
    import torch

    props, matched, labels, reg = model.roi_heads.select_training_samples(
        [p.detach() for p in proposals], targets)
    return props, torch.cat(labels), torch.cat(reg), matched


def box_regression_loss(deltas: Any, labels: Any, targets: Any, weights: Any = None) -> Any:
    """torchvision's Fast R-CNN box loss (smooth L1, β = 1/9, class-specific deltas of positives,
    summed and divided by the number of sampled RoIs), optionally weighted per RoI."""
    import torch
    import torch.nn.functional as F

    pos = torch.where(labels > 0)[0]
    deltas = deltas.reshape(deltas.shape[0], -1, 4)[pos, labels[pos]]
    per = F.smooth_l1_loss(deltas, targets[pos], beta=1 / 9, reduction="none").sum(dim=1)
    if weights is not None:
        per = per * weights[pos]
    return per.sum() / max(labels.numel(), 1)


def weighted_ce(logits: Any, labels: Any, weights: Any) -> Any:
    """Σ wᵢ·CE(logitsᵢ, labelsᵢ) / max(Σ wᵢ, 1) — Soft Teacher's normalisation by the weights."""
    import torch.nn.functional as F

    per = F.cross_entropy(logits, labels, reduction="none")
    return (per * weights).sum() / weights.sum().clamp(min=1.0)


# ------------------------------------------------------------------------ runs, reuse, notes
def run_config(ctx: Any, method: str, cfg: Any, data: MethodData) -> dict[str, Any]:
    """Everything that determines a run's result (decides reuse and resume)."""
    out = {"method": method, "config": dataclasses.asdict(cfg), "plan": ctx.plan.as_dict(),
           "seed": ctx.seed, "num_classes": data.num_classes,
           "class_agnostic": data.class_agnostic, "train_sha": file_digest(ctx.train_json)}
    if data.unlabeled:
        out["unlabeled_sha"] = file_digest(ctx.unlabeled_json)
    init = init_from(ctx.settings)
    if init is not None:
        out["init"] = init.config()
    return out


def base_notes(ctx: Any, cfg: Any, data: MethodData, model: str) -> dict[str, Any]:
    """Notes every method writes: what ran, from what, under which schedule."""
    return {"model": model, "weights": weights_note(ctx.plan, init_from(ctx.settings)),
            "schedule": ctx.plan.label(), "plan": ctx.plan.as_dict(), "device": ctx.device,
            "train_file": str(ctx.train_json), "method_config": dataclasses.asdict(cfg),
            **data.counts}


def reuse(ctx: Any, config: Mapping[str, Any], file_name: str = "model.pt",
          ) -> dict[str, Any] | None:
    """The saved stats of a finished model trained with ``config``, else None."""
    from baselines.supervised import read_saved

    final = ctx.work_dir / file_name
    if final.is_file():
        saved = read_saved(final)
        if saved.get("config") == dict(config):
            return {"reused": str(final), **saved.get("train_stats", {})}
    return None


def begin_run(ctx: Any, method: str, cfg: Any, model: str, *, unlabeled: bool = False,
              ) -> tuple[MethodData, dict[str, Any], dict[str, Any], dict[str, Any] | None]:
    """What every method's ``train`` starts with: its data, run config and base notes, and the
    stats of a finished run with that config (None when it must train)."""
    data = load_data(ctx, unlabeled=unlabeled)
    config = run_config(ctx, method, cfg, data)
    return data, config, base_notes(ctx, cfg, data, model), reuse(ctx, config)


def seeded_detector(ctx: Any, model: str, num_classes: int) -> tuple[Any, Any]:
    """``(spec, detector)`` of the run's plan on its device, initialised from the run's seed, or
    from the run's ``init_checkpoint`` (a warm start: :class:`baselines.supervised.InitFrom`)."""
    import torch

    from baselines.detectors import build_detector
    from baselines.supervised import detector_spec, load_init

    torch.manual_seed(ctx.seed)
    spec = detector_spec(ctx.plan, model, num_classes)
    detector = build_detector(spec).to(ctx.device)
    init = init_from(ctx.settings)
    if init is not None:
        load_init(detector, init.checkpoint, init.parts)
    return spec, detector


def finish(ctx: Any, model: Any, spec: Any, config: Mapping[str, Any],
           stats: Mapping[str, Any], file_name: str = "model.pt") -> None:
    """Save the detector the method tests with (``predict_saved`` loads it)."""
    from baselines.supervised import save_model

    save_model(Path(ctx.work_dir) / file_name, model, spec, config, stats)


def split_plan(plan: Any, fraction: float) -> tuple[Any, Any]:
    """A plan cut in two phases: ``fraction`` of the budget (or steps) and the rest."""
    if plan.iterations is not None:
        first = max(1, min(plan.iterations - 1, round(plan.iterations * fraction)))
        return (dataclasses.replace(plan, iterations=first),
                dataclasses.replace(plan, iterations=max(1, plan.iterations - first)))
    assert plan.budget_minutes is not None
    return (dataclasses.replace(plan, budget_minutes=plan.budget_minutes * fraction),
            dataclasses.replace(plan, budget_minutes=plan.budget_minutes * (1 - fraction)))


def train_semi_faster_rcnn(ctx: Any, name: str, cfg: Any, unsup_losses: Callable[..., Any],
                           stat_names: Sequence[str], *, test_teacher: bool) -> dict[str, Any]:
    """The semi-supervised Faster R-CNN loop Soft Teacher and PseCo share.

    Each step: the student's supervised losses on ``cfg.sup_per_step`` labelled views, and, on
    ``cfg.unsup_per_step`` unlabelled images, the method's ``unsup_losses(student, teacher, weak,
    strong, cfg, stats)`` weighted by ``cfg.unsup_weight``; the EMA teacher follows the student.
    ``stat_names`` are the per-image pseudo-label counters the method fills in ``stats``
    (reported per unlabelled image); ``test_teacher`` saves the EMA teacher as the tested model
    (PseCo's choice) instead of the student (Soft Teacher's).
    """
    from baselines.augment import strong_view
    from baselines.data import step_rng
    from baselines.train import fit

    data, config, notes, done = begin_run(ctx, name, cfg, "faster_rcnn", unlabeled=True)
    if done is not None:
        return {**notes, **done}
    spec, student = seeded_detector(ctx, "faster_rcnn", data.num_classes)
    ema = ema_teacher(student, cfg.ema_momentum, ema_reference(ctx, cfg.ema_reference_iters))
    stats = dict.fromkeys((*stat_names, "unlabeled_images"), 0.0)
    plan = ctx.plan

    def step(it: int) -> dict[str, Any]:
        rng = step_rng(ctx.seed, it)
        sup = [labeled_view(s, rng, plan) for s in draw(data.labeled, it, cfg.sup_per_step,
                                                          ctx.seed, 0)]
        losses = student([im.to(ctx.device) for im, _ in sup],
                         [{k: v.to(ctx.device) for k, v in t.items()} for _, t in sup])
        out = {f"sup_{k}": v for k, v in losses.items()}
        unl = draw(data.unlabeled, it, cfg.unsup_per_step, ctx.seed, 1)
        weak = [weak_view(s, rng, plan, with_boxes=False)[0].to(ctx.device) for s in unl]
        strong = [strong_view(w, rng, cfg.scale_range) for w in weak]
        if weak:
            unsup = unsup_losses(student, ema.model, weak, strong, cfg, stats)
            out.update({f"unsup_{k}": cfg.unsup_weight * v for k, v in unsup.items()})
        return out

    result = fit(student, step, plan, ctx.work_dir, seed=ctx.seed, config=config,
                 tracked={"teacher": ema}, after_step=ema.after_step(student))
    n = max(stats["unlabeled_images"], 1.0)
    per_image: dict[str, Any] = {k: round(stats[k] / n, 2) for k in stat_names}
    per_image["steps_counted"] = "this process's steps (a resumed run counts the rest)"
    train_stats = {**result.notes(), "ema_momentum_cap": round(float(ema.cap), 6),
                   "tested_model": "teacher (EMA)" if test_teacher else "student",
                   "pseudo_boxes_per_unlabeled_image": per_image}
    finish(ctx, ema.model if test_teacher else student, spec, config, train_stats)
    return {**notes, **train_stats}
