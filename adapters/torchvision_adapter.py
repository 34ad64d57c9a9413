"""torchvision adapter: RetinaNet, Faster R-CNN and FCOS (ResNet-50 FPN) adapted to tiny objects.

What is changed from torchvision's COCO defaults, and why (AI-TOD-style configs, methods.md §2.1):

* **input** 1024×1024 (TinySet's tile size; ``min_size = max_size = 1024``), no resizing up;
* **levels**: Faster R-CNN keeps P2–P6; RetinaNet and FCOS get a **P2** level too (P2–P7, strides
  4–128) because a 4–16 px object leaves nothing on a stride-8 map;
* **anchors** scaled down to the objects: Faster R-CNN 8–128 px (3 ratios), RetinaNet
  ``2·stride`` with 3 octave scales (8–256 px), FCOS size ranges starting at stride 4;
* **up to 3,000 detections per image** (the evaluator's largest maxDets), RPN keeps 3,000
  proposals at test time, low score thresholds so AP sees the whole precision-recall curve.

Training: SGD (momentum 0.9, weight decay 1e-4), linear warm-up, ×0.1 steps at 2/3 and 8/9 of the
iterations, gradient clipping at 35. ``paper`` schedule: the manifest's epochs (1× = 3 epochs) at
1024². ``smoke``: a CPU-sized run (input 128², 10 iterations, 64 sampled RoIs per image, 500 test
proposals, unless the ``smoke_size`` / ``smoke_iters`` / ``roi_batch`` / ``test_proposals``
options or ``job.extra`` say otherwise).
Backbone: ImageNet ResNet-50 weights from a **local file** when given (``backbone_weights`` in
``job.extra`` or the options; torchvision's downloader is never used), otherwise random
initialisation, which the result notes state. Checkpoints (``job.work_dir/checkpoint.pt``) make
training resumable; a finished model (``model.pt``) is reused when its configuration is unchanged.

Labels: class-agnostic by default (every object is class 1, as the paper evaluates), detections
are labelled with the dataset's first category id; ``class_agnostic = false`` trains one class
per dataset category. Ignore regions (``iscrowd = 1``) are left out of the training targets
(torchvision has no ignore label). Semi settings train on the labeled part only (the paper's
supervised "Faster R-CNN" rows); noise/shot settings train on the variant's ``train.json``.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from adapters.base import Detections, Job, cuda_unavailable
from tinyset_builder.errors import TinysetError
from tinyset_builder.io import read_json

MODELS = ("retinanet", "faster_rcnn", "fcos")
PAPER_SIZE = 1024
MAX_DETECTIONS = 3000


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """Everything that determines the trained weights (hashed to decide whether to reuse them)."""

    model: str
    size: int
    iterations: int
    batch_size: int
    lr: float
    warmup: int
    roi_batch: int
    test_proposals: int
    seed: int
    class_agnostic: bool
    num_classes: int
    backbone_weights: str | None
    train_sha: str

    def digest(self) -> str:
        """Short stable hash of the configuration."""
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Sample:
    """One training/eval image: its path and absolute xyxy boxes with 1-based class labels."""

    image_id: int
    path: Path
    boxes: np.ndarray
    labels: np.ndarray


# ---------------------------------------------------------------------------------------------
# data

def image_path(data_dir: Path, file_name: str, split: str | None) -> Path:
    """Locate an image of a built dataset: ``images/<file_name>`` or ``images/<split>/<file_name>``.

    Raises:
        TinysetError: neither exists (names both candidates).
    """
    first = data_dir / "images" / file_name
    if first.is_file():
        return first
    if split:
        second = data_dir / "images" / split / file_name
        if second.is_file():
            return second
    raise TinysetError(f"{data_dir}: image {file_name!r} not found under images/"
                       f"{'' if not split else f' or images/{split}/'}")


def category_map(coco: Mapping[str, Any], class_agnostic: bool) -> dict[int, int]:
    """COCO category id -> contiguous model label (1..K; background is 0 in torchvision)."""
    ids = sorted(int(c["id"]) for c in coco.get("categories", []))
    if class_agnostic:
        return dict.fromkeys(ids, 1)
    return {cid: i + 1 for i, cid in enumerate(ids)}


def load_samples(coco_json: Path, data_dir: Path, class_agnostic: bool = True,
                 ) -> tuple[list[Sample], dict[str, int]]:
    """Read a COCO file into :class:`Sample` s (crowd regions left out); return counts too.

    Boxes are converted from ``[x, y, w, h]`` to absolute ``[x0, y0, x1, y1]``; boxes without
    area (e.g. points) are skipped and counted, since a detector cannot regress them.
    """
    coco = read_json(coco_json)
    cmap = category_map(coco, class_agnostic)
    by_image: dict[int, list[Mapping[str, Any]]] = {}
    for a in coco.get("annotations", []):
        by_image.setdefault(int(a["image_id"]), []).append(a)
    split_hint = coco_json.stem if coco_json.stem in ("train", "val", "test") else None
    counts = {"images": 0, "boxes": 0, "crowd_skipped": 0, "degenerate_skipped": 0}
    samples = []
    for img in coco.get("images", []):
        split = img.get("split") or split_hint or "train"
        boxes, labels = [], []
        for a in by_image.get(int(img["id"]), []):
            if a.get("iscrowd", 0):
                counts["crowd_skipped"] += 1
                continue
            x, y, w, h = (float(v) for v in a["bbox"])
            if w <= 0 or h <= 0:
                counts["degenerate_skipped"] += 1
                continue
            if int(a["category_id"]) not in cmap:
                raise TinysetError(f"{coco_json}: annotation {a.get('id')} has unknown "
                                   f"category_id {a['category_id']}")
            boxes.append((x, y, x + w, y + h))
            labels.append(cmap[int(a["category_id"])])
        samples.append(Sample(int(img["id"]), image_path(data_dir, img["file_name"], split),
                              np.asarray(boxes, np.float32).reshape(-1, 4),
                              np.asarray(labels, np.int64)))
        counts["images"] += 1
        counts["boxes"] += len(boxes)
    return samples, counts


def _read_tensor(path: Path) -> Any:
    import torch

    from tinyset_builder.imageio import read_image

    pixels = read_image(path)
    return torch.from_numpy(np.array(pixels, copy=True)).permute(2, 0, 1).float().div_(255.0)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# models

def build_model(name: str, num_classes: int, size: int,
                backbone_weights: Path | None = None, *, frozen_bn: bool | None = None,
                roi_batch: int = 512, test_proposals: int = 3000) -> Any:
    """A torchvision detector adapted to tiny objects (see the module docstring).

    Args:
        name: ``retinanet``, ``faster_rcnn`` or ``fcos``.
        num_classes: object classes (background excluded).
        size: input side (images are resized to ``size × size``).
        backbone_weights: a local ImageNet ResNet-50 ``state_dict`` file, or None (random init).
        frozen_bn: frozen batch norm (default: when pretrained); set it to rebuild a model
            trained from weights without reading the weights file again.
        roi_batch: RoIs sampled per image for Faster R-CNN's box head (mmdet's 512; the smoke
            schedule uses fewer, since RoIAlign's backward dominates a CPU step).
        test_proposals: RPN proposals kept per image at test time (3,000; the smoke schedule
            keeps 500, since the box head's cost per image grows with them).
    """
    import torch
    from torch import nn
    from torchvision.models import resnet50
    from torchvision.models.detection import FCOS, FasterRCNN, RetinaNet
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.ops import FrozenBatchNorm2d
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7

    if name not in MODELS:
        raise TinysetError(f"torchvision adapter: unknown model {name!r} ({', '.join(MODELS)})")
    pretrained = backbone_weights is not None
    frozen = pretrained if frozen_bn is None else frozen_bn
    body = resnet50(weights=None, norm_layer=FrozenBatchNorm2d if frozen else nn.BatchNorm2d)
    if pretrained:
        state = torch.load(backbone_weights, map_location="cpu", weights_only=True)
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        missing, _ = body.load_state_dict(state, strict=False)
        if [k for k in missing if not k.startswith("fc.")]:
            raise TinysetError(f"{backbone_weights}: not a ResNet-50 state_dict "
                               f"({len(missing)} missing keys, e.g. {missing[0]})")
    if frozen:  # as torchvision does for ImageNet weights: freeze the stem and layer1
        for pname, p in body.named_parameters():
            if not pname.startswith(("layer2", "layer3", "layer4")):
                p.requires_grad_(False)
    returned = {"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"}
    channels = [256, 512, 1024, 2048]
    common = {"min_size": size, "max_size": size}
    if name == "faster_rcnn":
        backbone = BackboneWithFPN(body, returned, channels, 256, extra_blocks=LastLevelMaxPool())
        anchors = AnchorGenerator(((8,), (16,), (32,), (64,), (128,)), ((0.5, 1.0, 2.0),) * 5)
        train_top_n = 3000 if roi_batch >= 512 else 4 * roi_batch
        return FasterRCNN(backbone, num_classes + 1, rpn_anchor_generator=anchors,
                          rpn_pre_nms_top_n_train=3000, rpn_post_nms_top_n_train=train_top_n,
                          rpn_pre_nms_top_n_test=max(3000, test_proposals),
                          rpn_post_nms_top_n_test=test_proposals,
                          box_detections_per_img=MAX_DETECTIONS, box_score_thresh=0.001,
                          box_batch_size_per_image=roi_batch, **common)
    backbone = BackboneWithFPN(body, returned, channels, 256,
                               extra_blocks=LastLevelP6P7(256, 256))  # P2..P7
    strides = (4, 8, 16, 32, 64, 128)
    if name == "retinanet":
        sizes = tuple((2 * s, round(2 * s * 2 ** (1 / 3)), round(2 * s * 2 ** (2 / 3)))
                      for s in strides)
        anchors = AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(strides))
        return RetinaNet(backbone, num_classes + 1, anchor_generator=anchors,
                         score_thresh=0.01, detections_per_img=MAX_DETECTIONS,
                         topk_candidates=MAX_DETECTIONS, **common)
    anchors = AnchorGenerator(tuple((s,) for s in strides), ((1.0,),) * len(strides))
    return FCOS(backbone, num_classes + 1, anchor_generator=anchors, score_thresh=0.01,
                detections_per_img=MAX_DETECTIONS, topk_candidates=MAX_DETECTIONS, **common)


def lr_factor(it: int, total: int, warmup: int) -> float:
    """Linear warm-up from 0.001×, then ×0.1 at 2/3 and 8/9 of the run (mmdet's 8/11 of 12)."""
    if it < warmup:
        return 0.001 + (1 - 0.001) * it / max(warmup, 1)
    return 0.1 ** ((it >= total * 2 / 3) + (it >= total * 8 / 9))


# ---------------------------------------------------------------------------------------------
# the adapter

class TorchvisionAdapter:
    """RetinaNet / Faster R-CNN / FCOS through torchvision (see the module docstring)."""

    CHECKPOINT = "checkpoint.pt"
    FINAL = "model.pt"

    # -- helpers ---------------------------------------------------------------------------
    @staticmethod
    def _setting(job: Job, key: str, default: Any) -> Any:
        return job.extra.get(key, job.options.get(key, default))

    def _weights(self, job: Job) -> Path | None:
        w = self._setting(job, "backbone_weights", None)
        return Path(w) if w else None

    def config(self, job: Job, num_classes: int, n_images: int) -> TrainConfig:
        """The training configuration of ``job`` (schedule, size, iterations, seed)."""
        batch = int(self._setting(job, "batch_size", 2))
        if job.schedule == "smoke":
            size = int(self._setting(job, "smoke_size", 128))
            iterations = int(self._setting(job, "smoke_iters", 10))
            lr = float(self._setting(job, "smoke_lr", 0.01))
        else:
            size = int(self._setting(job, "size", PAPER_SIZE))
            epochs = float(job.method.get("epochs", 3.0))
            iterations = max(1, math.ceil(epochs * math.ceil(n_images / batch)))
            lr = float(self._setting(job, "lr", 0.005))
        warmup = min(500, iterations // 5)
        smoke = job.schedule == "smoke"
        roi_batch = int(self._setting(job, "roi_batch", 64 if smoke else 512))
        proposals = int(self._setting(job, "test_proposals", 500 if smoke else 3000))
        weights = self._weights(job)
        return TrainConfig(model=str(job.options.get("model", "faster_rcnn")), size=size,
                           iterations=iterations, batch_size=batch, lr=lr, warmup=warmup,
                           roi_batch=roi_batch, test_proposals=proposals,
                           seed=job.seed,
                           class_agnostic=bool(job.options.get("class_agnostic", True)),
                           num_classes=num_classes,
                           backbone_weights=str(weights) if weights else None,
                           train_sha=_sha(job.train_json))

    # -- protocol --------------------------------------------------------------------------
    def unavailable(self, job: Job) -> str | None:
        """Missing torch/torchvision, an unknown model, a missing weights file or GPU."""
        from tinyset_builder._imports import is_available

        if not (is_available("torch") and is_available("torchvision")):
            return "torch/torchvision not installed; pip install 'tinyset[torch]'"
        model = job.options.get("model")
        if model not in MODELS:
            return f"torchvision has no model {model!r} here ({', '.join(MODELS)})"
        weights = self._weights(job)
        if weights is not None and not weights.is_file():
            return (f"backbone weights {weights} not found (an ImageNet ResNet-50 state_dict, "
                    f"e.g. torchvision's resnet50-11ad3fa6.pth copied from a machine online)")
        return cuda_unavailable(job.device)

    def train(self, job: Job) -> dict[str, Any]:
        """Train (or resume, or reuse a finished model); return notes for the results file."""
        import torch

        samples, counts = load_samples(job.train_json, job.data_dir,
                                       bool(job.options.get("class_agnostic", True)))
        coco = read_json(job.train_json)
        k = 1 if job.options.get("class_agnostic", True) else len(coco.get("categories", []))
        cfg = self.config(job, k, len(samples))
        weights_note = (f"ImageNet ResNet-50 from {cfg.backbone_weights}" if cfg.backbone_weights
                        else "random init (no local ImageNet weights given; offline)")
        notes: dict[str, Any] = {
            "weights": weights_note, "model": cfg.model, "input_size": cfg.size,
            "iterations": cfg.iterations, "batch_size": cfg.batch_size, "lr": cfg.lr,
            "device": job.device, "train_file": str(job.train_json), **counts,
            "config_digest": cfg.digest()}
        if job.unlabeled_json is not None:
            notes["unlabeled"] = "not used (supervised baseline on the labeled part)"
        work = job.work_dir
        work.mkdir(parents=True, exist_ok=True)
        final = work / self.FINAL
        if final.is_file():
            saved = torch.load(final, map_location="cpu", weights_only=False)
            if saved.get("config") == asdict(cfg):
                return {**notes, "reused": str(final), **saved.get("train_stats", {})}
        if not samples:
            raise TinysetError(f"{job.train_json}: no images to train on")

        torch.manual_seed(cfg.seed)
        device = torch.device(job.device)
        model = build_model(cfg.model, cfg.num_classes, cfg.size,
                            Path(cfg.backbone_weights) if cfg.backbone_weights else None,
                            roi_batch=cfg.roi_batch)
        model.to(device).train()
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=1e-4)
        start, losses = 0, []
        ckpt = work / self.CHECKPOINT
        if ckpt.is_file():
            state = torch.load(ckpt, map_location="cpu", weights_only=False)
            if state.get("config") == asdict(cfg):
                model.load_state_dict(state["model"])
                opt.load_state_dict(state["optimizer"])
                start, losses = int(state["iteration"]), list(state["losses"])
                notes["resumed_from_iteration"] = start
        order = self._order(len(samples), cfg)
        every = max(1, min(200, cfg.iterations // 4))
        t0 = time.perf_counter()
        for it in range(start, cfg.iterations):
            for g in opt.param_groups:
                g["lr"] = cfg.lr * lr_factor(it, cfg.iterations, cfg.warmup)
            batch = order[it * cfg.batch_size:(it + 1) * cfg.batch_size]
            images = [_read_tensor(samples[i].path).to(device) for i in batch]
            targets = [{"boxes": torch.from_numpy(samples[i].boxes).to(device),
                        "labels": torch.from_numpy(samples[i].labels).to(device)} for i in batch]
            loss_dict = model(images, targets)
            loss = sum(loss_dict.values())
            if not torch.isfinite(loss):
                parts = {k: round(float(v), 4) for k, v in loss_dict.items()}
                raise FloatingPointError(f"loss became {loss.item()} at iteration {it} ({parts})")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 35.0)
            opt.step()
            losses.append(round(float(loss.detach()), 5))
            if (it + 1) % every == 0 or it + 1 == cfg.iterations:
                torch.save({"config": asdict(cfg), "model": model.state_dict(),
                            "optimizer": opt.state_dict(), "iteration": it + 1,
                            "losses": losses}, ckpt)
        stats = {"first_loss": losses[0] if losses else None,
                 "final_loss": losses[-1] if losses else None,
                 "train_seconds_this_session": round(time.perf_counter() - t0, 2)}
        torch.save({"config": asdict(cfg), "model": model.state_dict(), "train_stats": stats},
                   final)
        ckpt.unlink(missing_ok=True)
        return {**notes, **stats}

    @staticmethod
    def _order(n: int, cfg: TrainConfig) -> list[int]:
        """Image indices for every iteration: a fresh seeded permutation per epoch."""
        rng = np.random.default_rng(cfg.seed)
        need = cfg.iterations * cfg.batch_size
        out: list[int] = []
        while len(out) < need:
            out.extend(int(i) for i in rng.permutation(n))
        return out[:need]

    def predict(self, job: Job) -> Sequence[Detections]:
        """Detections for every image of ``job.eval_json`` with the trained model."""
        import torch

        final = job.work_dir / self.FINAL
        if not final.is_file():
            raise TinysetError(f"{final}: no trained model; train first")
        saved = torch.load(final, map_location="cpu", weights_only=False)
        cfg = saved["config"]
        model = build_model(cfg["model"], cfg["num_classes"], cfg["size"],
                            frozen_bn=cfg["backbone_weights"] is not None,
                            test_proposals=cfg.get("test_proposals", 3000))
        model.load_state_dict(saved["model"])
        device = torch.device(job.device)
        model.to(device).eval()
        coco = read_json(job.eval_json)
        ids = sorted(int(c["id"]) for c in coco.get("categories", []))
        if not ids:
            raise TinysetError(f"{job.eval_json}: no categories")
        if cfg["class_agnostic"]:
            to_cat = np.full(2, ids[0], np.int64)
        else:
            train_ids = sorted(int(c["id"]) for c in read_json(job.train_json)["categories"])
            to_cat = np.asarray([0, *train_ids], np.int64)
        samples, _ = load_samples(job.eval_json, job.data_dir, class_agnostic=True)
        out = []
        from tinyset_builder.progress import track

        with torch.inference_mode():
            for s in track(samples, f"predicting {len(samples)} images"):
                res = model([_read_tensor(s.path).to(device)])[0]
                out.append(Detections(
                    s.image_id, res["boxes"].cpu().numpy().astype(np.float32),
                    res["scores"].cpu().numpy().astype(np.float32),
                    to_cat[res["labels"].cpu().numpy()]))
        return out
