"""RFLA (Xu et al., ECCV 2022) on Faster R-CNN or FCOS — Table I row 6 (Faster R-CNN, ``full``).

Paper: "RFLA: Gaussian Receptive Field based Label Assignment for Tiny Object Detection".
Authors' code: ``Chasel-Tsui/mmdet-rfla`` @ 198977b5e198005fec783e81f10f9363946d2ef8
(``configs/rfla/aitodv2_faster_r50_rfla_kld_1x.py``, ``aitodv2_fcos_r50_p2_rfla_kld_1x.py``).
The mechanisms live in :mod:`baselines.assigners.rfla`; this module trains and predicts with them
on the shared detectors, schedules and training loop, and holds what the other tiny-object
methods of this family reuse (:func:`train_variant`, :func:`predict_variant`,
:func:`build_variant`):
a *variant* is a plain mapping saying which of RFLA / HS-FPN a detector carries, stored with the
model so that prediction rebuilds exactly what was trained.

Options (manifest ``options`` or the job's extra): ``model`` (``faster_rcnn`` default, or ``fcos``),
``topk``, ``ratio``, ``fraction`` (RFLA's defaults: [3, 1], 0.9, 0.5), ``class_agnostic``
(default true, as the paper evaluates) and every plan override of the schedule.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from baselines.methods import MethodContext, Prediction
from tinyset_builder.errors import TinysetError

#: The detector the method trains (a warm start loads a model of this kind).
DETECTOR = "faster_rcnn"


@dataclass(frozen=True)
class Config:
    """RFLA's defaults (``HieAssigner(topk=[3, 1], ratio=0.9)``, ``RFGenerator(fraction=0.5)``)."""

    model: str = DETECTOR  # row 6; FCOS with options.model = "fcos"
    topk: tuple[int, int] = (3, 1)
    ratio: float = 0.9
    fraction: float = 0.5
    class_agnostic: bool = True


def rfla_settings(cfg: Any) -> dict[str, Any]:
    """The RFLA part of a variant (plain types, stored in the model's config)."""
    return {"topk": [int(k) for k in cfg.topk], "ratio": float(cfg.ratio),
            "fraction": float(cfg.fraction)}


def build_variant(spec: Any, variant: Mapping[str, Any]) -> Any:
    """A detector of ``spec`` with the variant's neck (``neck``) and assigner (``rfla``)."""
    from baselines.assigners.rfla import RFLAConfig, apply_rfla
    from baselines.detectors import build_detector

    backbone = None
    neck = variant.get("neck")
    if neck is not None:
        from baselines.necks.hs_fpn import HSFPNConfig, build_hs_fpn_backbone

        hs = HSFPNConfig(ratio=tuple(neck["ratio"]), patch_p2=int(neck["patch_p2"]),
                         patch_p3=int(neck["patch_p3"]), window=int(neck["window"]))
        backbone = build_hs_fpn_backbone(spec, hs, "maxpool" if spec.model == "faster_rcnn"
                                         else "p6p7")
    model = build_detector(spec, backbone=backbone)
    rfla = variant.get("rfla")
    if rfla is not None:
        if spec.first_level != 2:  # the receptive-field table starts at P2, as the authors'
            raise TinysetError("RFLA's detectors start at P2 (first_level = 2)")
        apply_rfla(model, spec.backbone, RFLAConfig(topk=tuple(rfla["topk"]),
                                                    ratio=float(rfla["ratio"]),
                                                    fraction=float(rfla["fraction"])))
    return model


def _categories(ctx: MethodContext) -> list[int]:
    from tinyset_builder.io import read_json

    return sorted(int(c["id"]) for c in read_json(ctx.train_json).get("categories", []))


def train_variant(ctx: MethodContext, *, method: str, model_name: str,
                  variant: Mapping[str, Any], class_agnostic: bool = True,
                  make_step: Callable[..., Any] | None = None,
                  extra_config: Mapping[str, Any] | None = None,
                  notes: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Train (resume, or reuse a finished ``model.pt``) a variant detector; return notes.

    ``make_step(model, samples, spec)`` returns ``(trained_module, step, tracked, stats)`` for
    methods with their own training step (DN-TOD, SSD-Det): ``trained_module`` is what :func:`fit`
    optimises (the detector, or the detector with training-only heads), ``tracked`` extra state
    checkpointed with it, ``stats()`` extra notes; ``model`` (the detector) is what gets saved.
    Default: plain supervised steps.
    """
    import torch

    from baselines.data import file_digest, load_samples, training_batch
    from baselines.supervised import (
        FINAL,
        detector_spec,
        init_from,
        load_init,
        read_saved,
        save_model,
        weights_note,
    )
    from baselines.train import fit

    samples, counts = load_samples(ctx.train_json, ctx.data_dir, class_agnostic)
    k = 1 if class_agnostic else len(_categories(ctx))
    plan = ctx.plan
    spec = detector_spec(plan, model_name, k)
    config = {"method": method, "plan": plan.as_dict(), "model": model_name, "num_classes": k,
              "class_agnostic": class_agnostic, "variant": dict(variant), "seed": ctx.seed,
              "train_sha": file_digest(ctx.train_json), **dict(extra_config or {})}
    init = init_from(ctx.settings)  # a warm start from a plain detector of the same spec
    if init is not None:
        config["init"] = init.config()
    base = {"method": method, "model": model_name, "variant": dict(variant),
            "schedule": plan.label(), "plan": plan.as_dict(), "device": ctx.device,
            "weights": weights_note(plan, init),
            "train_file": str(ctx.train_json), **counts, **dict(notes or {})}
    final = ctx.work_dir / FINAL
    if final.is_file():
        saved = read_saved(final)
        if saved.get("config") == config:
            return {**base, "reused": str(final), **saved.get("train_stats", {})}
    if not samples:
        raise TinysetError(f"{ctx.train_json}: no images to train on")
    torch.manual_seed(ctx.seed)
    model = build_variant(spec, variant).to(ctx.device)
    if init is not None:  # the variant keeps the plain detector's state-dict keys
        load_init(model, init.checkpoint, init.parts)
    if make_step is None:
        def step(it: int) -> Mapping[str, Any]:
            images, targets = training_batch(samples, it, batch_size=plan.batch_size,
                                             crop=plan.crop, seed=ctx.seed, device=ctx.device,
                                             augment=plan.augment)
            return model(images, targets)
        trained, tracked, extra_stats = model, None, None
    else:
        trained, step, tracked, extra_stats = make_step(model, samples, spec)
    result = fit(trained, step, plan, ctx.work_dir, seed=ctx.seed, config=config,
                 tracked=tracked)
    stats = {**result.notes(), **(extra_stats() if extra_stats else {})}
    save_model(final, model, spec, config, stats)
    return {**base, **stats}


def predict_variant(ctx: MethodContext) -> list[Prediction]:
    """Predict ``ctx.eval_json`` with the variant detector saved by :func:`train_variant`."""
    import dataclasses

    from baselines.data import load_samples
    from baselines.detectors import DetectorSpec
    from baselines.supervised import FINAL, predict_samples, read_saved

    path = ctx.work_dir / FINAL
    if not path.is_file():
        raise TinysetError(f"{path}: no trained model; train first")
    saved = read_saved(path)
    cfg = saved["config"]
    spec = dataclasses.replace(DetectorSpec(**saved["spec"]), size=ctx.plan.test_size,
                               backbone_weights=None,
                               frozen_bn=saved["spec"]["backbone_weights"] is not None)
    model = build_variant(spec, cfg["variant"])
    model.load_state_dict(saved["model"])
    model = model.to(ctx.device).eval()
    from tinyset_builder.io import read_json

    eval_ids = sorted(int(c["id"]) for c in read_json(ctx.eval_json).get("categories", []))
    if not eval_ids:
        raise TinysetError(f"{ctx.eval_json}: no categories")
    if cfg["class_agnostic"]:
        to_cat = np.full(2, eval_ids[0], np.int64)
    else:
        to_cat = np.asarray([0, *_categories(ctx)], np.int64)
    samples, _ = load_samples(ctx.eval_json, ctx.data_dir, class_agnostic=True)
    return [(i, xyxy, scores, to_cat[labels])
            for i, xyxy, scores, labels in predict_samples(model, samples, ctx.device)]


def train(ctx: MethodContext) -> dict[str, Any]:
    """Train RFLA on ``ctx.setting("model")`` (Faster R-CNN by default)."""
    cfg = ctx.config(Config)
    if cfg.model not in ("faster_rcnn", "fcos"):
        raise TinysetError(f"RFLA runs on faster_rcnn or fcos, not {cfg.model!r}")
    return train_variant(ctx, method="rfla", model_name=cfg.model,
                         variant={"rfla": rfla_settings(cfg)},
                         class_agnostic=bool(cfg.class_agnostic),
                         notes={"rfla": asdict(cfg)})


def predict(ctx: MethodContext) -> list[Prediction]:
    """Detections of every image of ``ctx.eval_json``."""
    return predict_variant(ctx)
