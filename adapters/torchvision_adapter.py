"""torchvision adapter: RetinaNet, Faster R-CNN and FCOS adapted to tiny objects.

A thin translation from a job to :mod:`baselines`: the detectors (P2 level, small anchors, 3,000
detections, backbone choice) are built by :mod:`baselines.detectors`, the schedules (``paper``,
``smoke``, the budgeted ``cpu``) by :mod:`baselines.schedules`, and training with exact resume by
:mod:`baselines.train`. Options (manifest ``options`` or ``job.extra``, extra wins): ``model``,
``class_agnostic`` (default true: every object is class 1, as the paper evaluates; detections get
the dataset's first category id), ``backbone_weights`` (a local ImageNet ``state_dict``; random
initialisation otherwise, which the result notes state), ``init_checkpoint`` / ``init_parts``
(start from a pre-trained model: the transfer rows of ``adapters/transfer.py``), and every plan
override of :func:`baselines.schedules.resolve_plan`.

Ignore regions (``iscrowd = 1``) are left out of the training targets (torchvision has no ignore
label). Semi settings train on the labeled part only (the paper's supervised "Faster R-CNN" rows);
noise/shot settings train on the variant's ``train.json``. A finished model (``model.pt``) is
reused when its configuration is unchanged; an interrupted run resumes from ``checkpoint.pt``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from adapters.base import Detections, Job, cuda_unavailable
from baselines.data import file_digest, load_samples
from baselines.detectors import MODELS
from baselines.schedules import TrainPlan, resolve_plan
from baselines.supervised import FINAL, weights_note
from tinyset_builder.errors import TinysetError
from tinyset_builder.io import read_json


def job_settings(job: Job) -> dict[str, Any]:
    """The method's options with the job's extra on top (extra wins)."""
    return {**dict(job.options), **dict(job.extra)}


def job_plan(job: Job, n_images: int) -> TrainPlan:
    """The training plan of ``job`` (its schedule, the manifest's epochs, per-run overrides)."""
    return resolve_plan(job.schedule, job_settings(job), n_images=n_images,
                        epochs=float(job.method.get("epochs", 3.0)))


def label_map(job: Job, class_agnostic: bool) -> np.ndarray:
    """Model label -> dataset category id (index 0 is background)."""
    ids = sorted(int(c["id"]) for c in read_json(job.eval_json).get("categories", []))
    if not ids:
        raise TinysetError(f"{job.eval_json}: no categories")
    if class_agnostic:
        return np.full(2, ids[0], np.int64)
    train_ids = sorted(int(c["id"]) for c in read_json(job.train_json)["categories"])
    return np.asarray([0, *train_ids], np.int64)


class TorchvisionAdapter:
    """RetinaNet / Faster R-CNN / FCOS through :mod:`baselines` (see the module docstring)."""

    def unavailable(self, job: Job) -> str | None:
        """Missing torch/torchvision, an unknown model, a missing weights file or GPU."""
        from tinyset_builder._imports import is_available

        if not (is_available("torch") and is_available("torchvision")):
            return "torch/torchvision not installed; pip install 'tinyset[torch]'"
        model = job.options.get("model")
        if model not in MODELS:
            return f"torchvision has no model {model!r} here ({', '.join(MODELS)})"
        weights = job_settings(job).get("backbone_weights")
        if weights and not Path(weights).is_file():
            return (f"backbone weights {weights} not found (an ImageNet ResNet state_dict, "
                    f"e.g. torchvision's resnet50-11ad3fa6.pth copied from a machine online)")
        return cuda_unavailable(job.device)

    def train(self, job: Job) -> dict[str, Any]:
        """Train (or resume, or reuse a finished model); return notes for the results file."""
        from baselines.supervised import (
            detector_spec,
            init_from,
            read_saved,
            save_model,
            train_detector,
        )

        agnostic = bool(job.options.get("class_agnostic", True))
        samples, counts = load_samples(job.train_json, job.data_dir, agnostic)
        k = 1 if agnostic else len(read_json(job.train_json).get("categories", []))
        plan = job_plan(job, len(samples))
        spec = detector_spec(plan, str(job.options.get("model", "faster_rcnn")), k)
        config = {"plan": plan.as_dict(), "model": spec.model, "num_classes": k,
                  "class_agnostic": agnostic, "seed": job.seed,
                  "train_sha": file_digest(job.train_json)}
        # Transfer rows and warm starts: start from a pre-trained model of this toolkit.
        init = init_from(job_settings(job))
        if init is not None:
            config["init"] = init.config()
        notes: dict[str, Any] = {"weights": weights_note(plan, init), "model": spec.model,
                                 "backbone": f"{plan.backbone}-fpn{plan.fpn_channels}",
                                 "schedule": plan.label(), "plan": plan.as_dict(),
                                 "device": job.device, "train_file": str(job.train_json),
                                 **counts}
        if job.unlabeled_json is not None:
            notes["unlabeled"] = "not used (supervised baseline on the labeled part)"
        final = job.work_dir / FINAL
        if final.is_file():
            saved = read_saved(final)
            if saved.get("config") == config:
                return {**notes, "reused": str(final), **saved.get("train_stats", {})}
        if not samples:
            raise TinysetError(f"{job.train_json}: no images to train on")
        model, result = train_detector(samples, plan, spec, job.work_dir, seed=job.seed,
                                       device=job.device, config=config,
                                       init=init)
        stats = result.notes()
        save_model(final, model, spec, config, stats)
        return {**notes, **stats}

    def predict(self, job: Job) -> Sequence[Detections]:
        """Detections for every image of ``job.eval_json`` with the trained model."""
        from baselines.supervised import load_for_test, predict_samples, read_saved

        final = job.work_dir / FINAL
        if not final.is_file():
            raise TinysetError(f"{final}: no trained model; train first")
        saved = read_saved(final)
        cfg = saved["config"]
        model = load_for_test(saved, int(cfg["plan"]["test_size"]), job.device)
        to_cat = label_map(job, bool(cfg["class_agnostic"]))
        samples, _ = load_samples(job.eval_json, job.data_dir, class_agnostic=True)
        return [Detections(i, xyxy, scores, to_cat[labels])
                for i, xyxy, scores, labels in predict_samples(model, samples, job.device)]
