"""DN-TOD (Zhu et al., 2024) on FCOS with RFLA's assignment — Table I rows 9 and 13 (noise-20/40).

Paper: H. Zhu, C. Xu, W. Yang, R. Zhang, Y. Zhang, G.-S. Xia, "Robust Tiny Object Detection in
Aerial Images amidst Label Noise" (DN-TOD). Authors' code: ``ZhuHaoranEIS/DN-TOD`` @
0b110c0d84329f7bf4c199c7065dab6ff98327fb (``mmdet/models/dense_heads/dntod_fcos_head.py``, configs
``configs/DN-TOD-FCOS/inaccurate_bounding_boxes_noise/noise_0.{1,3}.py``). Own implementation.

The detector is the shared FCOS (P2–P7) whose points are assigned by RFLA
(:mod:`baselines.assigners.rfla`). On top, per training step:

* **Trend-guided label reweighting** (:func:`trend_weights`, the authors' ``TLS``): each image
  remembers the classification scores of its points from its previous visit. A positive point of
  ground truth ``g`` gets ``w₁ = 1 − s_last / s_now`` (scores rising → large; non-positive values
  replaced by half the smallest positive one; normalised by the maximum) and
  ``w₂ = s_now / Σ s_now`` (normalised by the maximum), combined ``α w₁ + (1 − α) w₂``
  (α = ``cls_alpha`` = 0.5) and normalised again; a negative point gets
  ``min(1, max_c s_last / max_c s_now)`` (a background point whose score keeps rising is probably
  an unlabelled or shifted object). The weights multiply the focal loss.
* **Recurrent box regeneration** (:func:`regenerate_boxes`, the authors' ``RBR``): for every ground
  truth, the score-weighted mean of its positive points' predicted boxes ``B_now`` with grade
  ``g_now`` = the best score is blended with the noisy annotation and the previous visit's
  regenerated box: ``(w·B_gt + g_last·B_last + g_now·B_now) / (w + g_last + g_now)``
  (w = ``w1`` = 1; without a previous visit the middle term is absent). The result is
  remembered and the points are assigned again (RFLA) to the regenerated boxes, which become the
  regression targets.
* **Class-aware label correction** (:class:`ClassConfidence`, :func:`class_shift_filter`, the
  authors' ``CLC``): per-iteration class-confidence matrices (mean score of every class on the
  positives of every labelled class) over the last ``samples`` iterations give thresholds
  ``mean·t₀ + std·t₁``; after ``frozen_iter`` iterations a positive whose top class ``j`` differs
  from its label ``i`` and whose score passes both threshold (i, j) and (j, j) is dropped
  (``strategy`` 0) or relabelled (1). The authors' box-noise configs (the 20 % / 40 % settings of
  Table I) set ``with_CLC=False``, and with TinySet's single class no positive can be class-shifted,
  so it is off by default and implemented for multi-class runs (``with_clc = true``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from baselines.methods import MethodContext, Prediction
from baselines.methods.rfla import predict_variant, rfla_settings, train_variant

#: The detector the method trains (a warm start loads a model of this kind).
DETECTOR = "fcos"


@dataclass(frozen=True)
class Config:
    """The authors' box-noise defaults (``noise_0.1.py`` and ``noise_0.3.py`` are identical)."""

    w1: float = 1.0
    cls_alpha: float = 0.5
    tls_positive: bool = True
    tls_negative: bool = True
    rbr: bool = True
    with_clc: bool = False
    frozen_iter: int = 60000
    samples: int = 100
    strategy: int = 0
    threshold: tuple[float, float] = (1.0, 0.0)
    topk: tuple[int, int] = (3, 1)
    ratio: float = 0.9
    fraction: float = 0.5
    class_agnostic: bool = True


# ----------------------------------------------------------------------------- mechanisms


def trend_weights(scores_now: Any, scores_last: Any, matched: Any, labels: Any, alpha: float,
                  positive: bool = True, negative: bool = True) -> Any:
    """Per-point classification weights of one image (see the module docstring).

    Args:
        scores_now: ``(A, C)`` sigmoid scores of this visit (detached).
        scores_last: ``(A, C)`` scores of the previous visit, NaN where unknown.
        matched: ``(A,)`` gt index per point, ``-1`` background.
        labels: ``(G,)`` 0-based class of every gt.
        alpha: weight of the trend term ``w₁`` against the score term ``w₂``.
    """
    import torch

    weights = torch.ones_like(scores_now[:, 0])
    if positive:
        for g in range(int(labels.shape[0])):
            idx = (matched == g).nonzero().flatten()
            if idx.numel() == 0:
                continue
            now = scores_now[idx, labels[g]]
            last = scores_last[idx, labels[g]]
            if torch.isnan(last).all():   # first visit of these points: unweighted
                continue
            w1 = 1 - last / now
            known = ~torch.isnan(w1)
            rising = known & (w1 > 0)
            if rising.any():
                w1 = torch.where(known & (w1 <= 0), w1[rising].min() / 2, w1)
                w1 = w1 / w1[known].max()
            else:
                w1 = torch.ones_like(w1)
            w1 = torch.nan_to_num(w1, nan=1.0)
            w2 = now / now.sum()
            w2 = torch.nan_to_num(w2 / w2.max(), nan=1.0)
            both = alpha * w1 + (1 - alpha) * w2
            weights[idx] = torch.nan_to_num(both / both.max(), nan=1.0)
    if negative:
        neg = matched < 0
        ratio = scores_last[neg].max(dim=1).values / scores_now[neg].max(dim=1).values
        weights[neg] = torch.nan_to_num(ratio.clamp(max=1.0), nan=1.0)
    return weights


def regenerate_boxes(gt: Any, labels: Any, scores_now: Any, pred_boxes: Any, matched: Any,
                     w1: float, last_boxes: Any = None, last_grades: Any = None,
                     has_last: Any = None) -> tuple[Any, Any]:
    """Recurrent box regeneration of one image: ``(regenerated boxes (G, 4), grades (G,))``.

    ``last_*`` hold the previous visit's regenerated boxes and grades where ``has_last`` is true.
    A gt without positive points keeps its box with grade 1 (as the authors' code).
    """
    import torch

    g_count = gt.shape[0]
    b_now, grade = gt.clone(), gt.new_ones(g_count)
    for g in range(g_count):
        idx = (matched == g).nonzero().flatten()
        if idx.numel() == 0:
            continue
        s = scores_now[idx, labels[g]]
        b = (s[:, None] * pred_boxes[idx]).sum(0) / s.sum()
        if torch.isfinite(b).all():
            b_now[g], grade[g] = b, s.max()
    num = w1 * gt + grade[:, None] * b_now
    den = w1 + grade
    if has_last is not None and bool(has_last.any()):
        keep = has_last.to(gt.dtype)
        num = num + (keep * last_grades)[:, None] * last_boxes
        den = den + keep * last_grades
    return num / den[:, None], grade


class ClassConfidence:
    """CLC's running class-confidence matrices and the thresholds they give (``DCM``)."""

    def __init__(self, num_classes: int, samples: int, threshold: tuple[float, float],
                 frozen_iter: int):
        import torch

        self.num_classes, self.samples = num_classes, samples
        self.threshold, self.frozen_iter = threshold, frozen_iter
        self.matrices = torch.full((samples, num_classes, num_classes), float("nan"))
        self.memory = torch.full((num_classes, num_classes), float("nan"))
        self.iters = 0

    def thresholds(self) -> Any:
        """``(C, C)`` thresholds: ones before ``frozen_iter``; then mean·t₀ + std·t₁ with the last
        known value (else 0.5) where undefined, and at least 0.1."""
        import torch

        if self.iters < self.frozen_iter:
            return torch.ones((self.num_classes, self.num_classes))
        data = self.matrices.numpy()
        with np.errstate(all="ignore"):
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                mean = np.nanmean(data, axis=0)
                std = np.nanstd(data, axis=0, ddof=1)
        th = torch.from_numpy(self.threshold[0] * mean + self.threshold[1] * std).float()
        known = ~torch.isnan(th)
        self.memory = torch.where(known, th, self.memory)
        th = torch.where(known, th, torch.nan_to_num(self.memory, nan=0.5))
        return th.clamp(min=0.1)

    def record(self, scores: Any, labels: Any) -> None:
        """Store this iteration's mean scores of the positives of each labelled class."""
        import torch

        mat = torch.full((self.num_classes, self.num_classes), float("nan"))
        for c in range(self.num_classes):
            rows = scores[labels == c]
            if rows.shape[0]:
                mat[c] = rows.mean(0).cpu()
        self.matrices[self.iters % self.samples] = mat
        self.iters += 1

    def state_dict(self) -> dict[str, Any]:
        """For :func:`baselines.train.fit`'s checkpoints."""
        return {"matrices": self.matrices, "memory": self.memory, "iters": self.iters}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.matrices, self.memory = state["matrices"], state["memory"]
        self.iters = int(state["iters"])


def class_shift_filter(scores: Any, labels: Any, thresholds: Any) -> Any:
    """CLC's class-shift test on positives: the new class per positive, or ``-1`` when kept.

    A positive labelled ``i`` whose highest-scoring class is not ``i`` is class-shifted to the
    first class ``j`` (in decreasing score, stopping at ``i``) with ``s_j ≥ th[i, j]`` and
    ``s_j ≥ th[j, j]``.
    """
    import torch

    out = torch.full_like(labels, -1)
    order = scores.argsort(dim=1, descending=True)
    for p in range(scores.shape[0]):
        i = int(labels[p])
        if int(order[p, 0]) == i:
            continue
        for j in order[p].tolist():
            if j == i:
                break
            s = float(scores[p, j])
            if s >= float(thresholds[i, j]) and s >= float(thresholds[j, j]):
                out[p] = j
                break
    return out


class PointMemory:
    """Per-image memory of point scores (image-grid cells per level) and regenerated boxes.

    The authors key memory by image file and point index, since they train on whole images. The
    ``cpu`` schedule trains on random crops, so scores are kept on each level's grid in image
    coordinates (a crop's point ``(x, y)`` at stride ``s`` is cell
    ``(x + left // s, y + top // s)``) and boxes by annotation index in image coordinates.
    """

    def __init__(self, margin: int = 256) -> None:
        self.margin = margin   # a padded crop may reach this far past the image edge
        self.scores: dict[str, Any] = {}
        self.boxes: dict[str, Any] = {}

    def read_scores(self, image_id: int, shapes: list[tuple[int, int]], strides: list[int],
                    top: int, left: int, channels: int, image_hw: tuple[int, int]) -> Any:
        """``(A, C)`` remembered scores of a crop's points (NaN where never seen)."""
        import torch

        parts = []
        for lvl, ((h, w), s) in enumerate(zip(shapes, strides, strict=True)):
            grid = self._grid(image_id, lvl, s, channels, image_hw)
            y0, x0 = top // s, left // s
            parts.append(grid[y0:y0 + h, x0:x0 + w].reshape(h * w, channels))
        return torch.cat(parts)

    def write_scores(self, image_id: int, scores: Any, shapes: list[tuple[int, int]],
                     strides: list[int], top: int, left: int, image_hw: tuple[int, int]) -> None:
        """Remember a crop's ``(A, C)`` scores."""
        start = 0
        channels = scores.shape[1]
        for lvl, ((h, w), s) in enumerate(zip(shapes, strides, strict=True)):
            grid = self._grid(image_id, lvl, s, channels, image_hw)
            y0, x0 = top // s, left // s
            grid[y0:y0 + h, x0:x0 + w] = scores[start:start + h * w].reshape(h, w, channels).cpu()
            start += h * w

    def _grid(self, image_id: int, lvl: int, stride: int, channels: int,
              image_hw: tuple[int, int]) -> Any:
        import torch

        key = f"{image_id}/{lvl}"
        if key not in self.scores:
            h = (image_hw[0] + self.margin) // stride + 2
            w = (image_hw[1] + self.margin) // stride + 2
            self.scores[key] = torch.full((h, w, channels), float("nan"))
        return self.scores[key]

    def read_boxes(self, image_id: int, ann: list[int]) -> tuple[Any, Any, Any]:
        """Remembered ``(boxes (G, 4), grades (G,), known (G,))`` in image coordinates."""
        import torch

        boxes = torch.zeros((len(ann), 4))
        grades = torch.zeros(len(ann))
        known = torch.zeros(len(ann), dtype=torch.bool)
        for n, a in enumerate(ann):
            rec = self.boxes.get(f"{image_id}/{a}")
            if rec is not None:
                boxes[n], grades[n], known[n] = rec[:4], rec[4], True
        return boxes, grades, known

    def write_box(self, image_id: int, ann: int, box: Any, grade: float) -> None:
        """Remember one regenerated box (image coordinates) and its grade."""
        import torch

        self.boxes[f"{image_id}/{ann}"] = torch.cat([box.detach().cpu().float(),
                                                     torch.tensor([float(grade)])])

    def state_dict(self) -> dict[str, Any]:
        """For :func:`baselines.train.fit`'s checkpoints."""
        return {"scores": dict(self.scores), "boxes": dict(self.boxes)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.scores, self.boxes = dict(state["scores"]), dict(state["boxes"])


# ----------------------------------------------------------------------------- training


def make_step(cfg: Config, plan: Any, seed: int, device: str) -> Any:
    """``make_step`` for :func:`baselines.methods.rfla.train_variant` (DN-TOD's training step)."""

    def factory(model: Any, samples: list[Any], spec: Any) -> tuple[Any, Any, Any, Any]:
        import torch

        from baselines.assigners.rfla import rfla_fcos_matches
        from baselines.data import batch_indices, crop_boxes, crop_window, read_tensor, step_rng
        from baselines.detectors import fcos_loss, level_strides

        size = int(plan.crop or plan.test_size)
        strides = list(level_strides(spec))
        memory = PointMemory(margin=size)
        clc = ClassConfidence(spec.num_classes, cfg.samples, tuple(cfg.threshold),
                              cfg.frozen_iter)
        counters = {"regenerated_shift_px": [], "dropped_class_shifted": 0}

        def step(it: int) -> Mapping[str, Any]:
            rng = step_rng(seed, it)
            images, targets, metas = [], [], []
            for i in batch_indices(len(samples), it, plan.batch_size, seed):
                s = samples[i]
                image = read_tensor(s.path)
                _, h, w = image.shape
                top, left = crop_window(h, w, s.boxes, size, rng)
                patch = image.new_zeros((3, size, size))
                part = image[:, top:top + size, left:left + size]
                patch[:, :part.shape[1], :part.shape[2]] = part
                boxes, labels, keep = crop_boxes(s.boxes, s.labels, top, left, size)
                shifted = s.boxes[keep] - np.array([left, top, left, top], np.float32)
                whole = np.all(np.abs(shifted - boxes) < 1e-4, axis=1)
                images.append(patch.to(device))
                targets.append({
                    "boxes": torch.from_numpy(np.ascontiguousarray(boxes)).to(device),
                    "labels": torch.from_numpy(np.ascontiguousarray(labels)).to(device)})
                metas.append((s.image_id, top, left, (h, w), np.nonzero(keep)[0].tolist(), whole))
            images_t, targets_t = model.transform(images, targets)
            feats = list(model.backbone(images_t.tensors).values())
            head_out = model.head(feats)
            anchors = model.anchor_generator(images_t, feats)
            shapes = [(f.shape[2], f.shape[3]) for f in feats]
            napl = [h * w for h, w in shapes]
            with torch.no_grad():
                scores = head_out["cls_logits"].detach().sigmoid()
                pred = model.head.box_coder.decode(head_out["bbox_regression"].detach(),
                                                   torch.stack(anchors))
                matched0 = rfla_fcos_matches(anchors, targets_t, napl, model.erf, model.rfla)
                new_targets, weights = [], []
                for n, (image_id, top, left, hw, ann, whole) in enumerate(metas):
                    tgt = targets_t[n]
                    labels0 = tgt["labels"] - 1
                    last = memory.read_scores(image_id, shapes, strides, top, left,
                                              scores.shape[2], hw).to(device)
                    weights.append(trend_weights(scores[n], last, matched0[n], labels0,
                                                 cfg.cls_alpha, cfg.tls_positive,
                                                 cfg.tls_negative))
                    boxes = tgt["boxes"]
                    if cfg.rbr and boxes.shape[0]:
                        offset = boxes.new_tensor([left, top, left, top])
                        lb, lg, known = memory.read_boxes(image_id, ann)
                        known = known.to(device) & torch.from_numpy(whole).to(device)
                        regen, grade = regenerate_boxes(boxes, labels0, scores[n], pred[n],
                                                        matched0[n], cfg.w1,
                                                        lb.to(device) - offset, lg.to(device),
                                                        known)
                        for g, a in enumerate(ann):
                            if whole[g]:
                                memory.write_box(image_id, a, regen[g] + offset, float(grade[g]))
                        counters["regenerated_shift_px"].append(
                            float((regen - boxes).abs().mean()))
                        boxes = regen
                    new_targets.append({"boxes": boxes, "labels": tgt["labels"]})
                    memory.write_scores(image_id, scores[n], shapes, strides, top, left, hw)
                matched = (rfla_fcos_matches(anchors, new_targets, napl, model.erf, model.rfla)
                           if cfg.rbr else matched0)
                cls_w = torch.stack(weights)
                if cfg.with_clc:
                    th = clc.thresholds()
                    flat_m = torch.cat(matched)
                    pos = (flat_m >= 0).nonzero().flatten()
                    flat_labels = torch.cat([t["labels"][m.clip(min=0)] - 1
                                             for t, m in zip(new_targets, matched, strict=True)])
                    flat_scores = scores.reshape(-1, scores.shape[2])
                    clc.record(flat_scores[pos], flat_labels[pos])
                    if clc.iters - 1 >= cfg.frozen_iter and pos.numel():
                        shift = class_shift_filter(flat_scores[pos], flat_labels[pos], th)
                        hit = pos[shift >= 0]
                        counters["dropped_class_shifted"] += int(hit.numel())
                        if cfg.strategy == 0:
                            cls_w.view(-1)[hit] = 0.0
                        # strategy 1 (relabelling) only matters with several classes; the
                        # class targets follow the gt labels, so it is applied through them:
                        else:
                            _relabel(new_targets, matched, hit, shift[shift >= 0], napl)
            return fcos_loss(model.head, new_targets, head_out, anchors, matched,
                             cls_weights=cls_w)

        def stats() -> dict[str, Any]:
            shifts = counters["regenerated_shift_px"]
            return {"dn_tod": {"mean_regeneration_shift_px": round(float(np.mean(shifts)), 3)
                               if shifts else None,
                               "class_shifted_dropped": counters["dropped_class_shifted"],
                               "remembered_boxes": len(memory.boxes)}}

        return model, step, {"dn_tod_memory": memory, "dn_tod_clc": clc}, stats

    return factory


def _relabel(targets: list[Any], matched: list[Any], flat_points: Any, new_classes: Any,
             napl: list[int]) -> None:
    """CLC strategy 1: give the gt of each class-shifted point the corrected class."""
    per_image = sum(napl)
    for p, c in zip(flat_points.tolist(), new_classes.tolist(), strict=True):
        n, a = divmod(p, per_image)
        g = int(matched[n][a])
        targets[n]["labels"][g] = c + 1


def train(ctx: MethodContext) -> dict[str, Any]:
    """Train DN-TOD (FCOS + RFLA + TLS + RBR [+ CLC])."""
    cfg = ctx.config(Config)
    return train_variant(ctx, method="dn_tod", model_name=DETECTOR,
                         variant={"rfla": rfla_settings(cfg)},
                         class_agnostic=bool(cfg.class_agnostic),
                         make_step=make_step(cfg, ctx.plan, ctx.seed, ctx.device),
                         extra_config={"dn_tod": asdict(cfg)}, notes={"dn_tod_config": asdict(cfg)})


def predict(ctx: MethodContext) -> list[Prediction]:
    """Detections of every image of ``ctx.eval_json`` (a plain RFLA-FCOS at test time)."""
    return predict_variant(ctx)
