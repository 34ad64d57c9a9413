"""Train a detector on labelled samples under a plan, save it, load it, predict with it.

The plain baselines of Table I are exactly this; the label-efficient methods reuse its pieces
(the detector spec of a plan, saving and loading, prediction on whole tiles).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from baselines.data import Sample, file_digest, read_tensor, training_batch
from baselines.detectors import DetectorSpec, build_detector
from baselines.schedules import TrainPlan
from baselines.train import FitResult, fit

#: A finished model's file name inside a run's work folder.
FINAL = "model.pt"


def detector_spec(plan: TrainPlan, model: str, num_classes: int, *, train: bool = True,
                  ) -> DetectorSpec:
    """The detector a plan trains (``train=True``: crop-sized input) or tests (tile-sized)."""
    size = (plan.crop or plan.test_size) if train else plan.test_size
    return DetectorSpec(model=model, num_classes=num_classes, size=size, backbone=plan.backbone,
                        fpn_channels=plan.fpn_channels, backbone_weights=plan.backbone_weights,
                        roi_batch=plan.roi_batch, test_proposals=plan.test_proposals,
                        anchor_base=plan.anchor_base, first_level=plan.first_level)


def train_detector(samples: list[Sample], plan: TrainPlan, spec: DetectorSpec, work_dir: Path,
                   *, seed: int, device: str, config: Mapping[str, Any],
                   init: InitFrom | None = None) -> tuple[Any, FitResult]:
    """Plain supervised training of ``spec`` on ``samples`` (resumable; see :func:`fit`).

    ``init`` (a :func:`save_model` file) starts from a pre-trained model instead
    (:func:`load_init`); a resumed run continues from its own checkpoint as usual.
    """
    import torch

    torch.manual_seed(seed)
    model = build_detector(spec).to(device)
    if init is not None:
        load_init(model, init.checkpoint, init.parts)

    def step(it: int) -> Mapping[str, Any]:
        images, targets = training_batch(samples, it, batch_size=plan.batch_size,
                                         crop=plan.crop, seed=seed, device=device,
                                         augment=plan.augment)
        return model(images, targets)

    return model, fit(model, step, plan, work_dir, seed=seed, config=config)


def save_model(path: Path, model: Any, spec: DetectorSpec, config: Mapping[str, Any],
               stats: Mapping[str, Any]) -> None:
    """Write a finished model with what built it (atomic)."""
    import dataclasses

    import torch

    from tinyset_builder.io import atomic_path

    with atomic_path(path, fsync=False) as tmp:
        torch.save({"config": dict(config), "spec": dataclasses.asdict(spec),
                    "model": model.state_dict(), "train_stats": dict(stats)}, tmp)


@dataclass(frozen=True)
class InitFrom:
    """A pre-trained model of this toolkit a run starts from (options ``init_checkpoint`` and
    ``init_parts``): transfer rows (``adapters/transfer.py``) and warm-started label-efficient
    comparisons (``benchmarks/label_efficient.py --warm-start``)."""

    checkpoint: Path
    parts: str = "all"

    def config(self) -> dict[str, str]:
        """What of it decides the result (part of the run's config: reuse and resume)."""
        return {"checkpoint_sha": file_digest(self.checkpoint), "parts": self.parts}

    def note(self) -> str:
        """The results file's ``weights`` note."""
        return f"{self.parts} from {self.checkpoint}"


def weights_note(plan: TrainPlan, init: InitFrom | None = None) -> str:
    """What the model started from, for the results file."""
    if init is not None:
        return init.note()
    if plan.backbone_weights:
        return f"ImageNet {plan.backbone} from {plan.backbone_weights}"
    return f"random init {plan.backbone} (no local ImageNet weights given; offline)"


def init_from(settings: Mapping[str, Any]) -> InitFrom | None:
    """The run's :class:`InitFrom`, or None when it starts from the plan's initialisation."""
    path = settings.get("init_checkpoint")
    return InitFrom(Path(path), str(settings.get("init_parts", "all"))) if path else None


def load_init(model: Any, path: Path, parts: str = "all") -> int:
    """Copy a saved model's weights into ``model``; returns how many tensors were copied.

    ``parts``: ``all`` (every tensor) or ``backbone`` (the feature extractor, ``backbone.body.*``,
    without FPN and heads). Every tensor of those parts must exist in the checkpoint with the same
    shape (BatchNorm's ``num_batches_tracked`` counters aside, which frozen BN does not have), so
    a checkpoint of another model or backbone is a one-line error, never a silent partial load.
    """
    from tinyset_builder.errors import TinysetError

    if parts not in ("all", "backbone"):
        raise TinysetError(f"init parts must be all or backbone, got {parts!r}")
    saved = read_saved(path)["model"]
    own = model.state_dict()
    prefix = "backbone.body." if parts == "backbone" else ""
    wanted = [k for k in own if k.startswith(prefix) and not k.endswith("num_batches_tracked")]
    bad = [k for k in wanted if k not in saved or tuple(saved[k].shape) != tuple(own[k].shape)]
    if bad:
        raise TinysetError(f"{path}: {len(bad)} of {len(wanted)} {parts} tensors missing or of "
                           f"another shape (first: {bad[0]}); pre-train the same model and "
                           f"backbone")
    model.load_state_dict({k: saved[k] for k in wanted}, strict=False)
    return len(wanted)


def read_saved(path: Path) -> dict[str, Any]:
    """A saved model's record (config, spec, weights, stats)."""
    import torch

    return torch.load(path, map_location="cpu", weights_only=False)


def load_for_test(saved: Mapping[str, Any], test_size: int, device: str) -> Any:
    """Rebuild a saved detector for ``test_size`` inputs, in eval mode on ``device``."""
    import dataclasses

    spec = DetectorSpec(**saved["spec"])
    # Weights come from the checkpoint; keep the frozen-BN layout the weights were trained with.
    spec = dataclasses.replace(spec, size=test_size, backbone_weights=None,
                               frozen_bn=saved["spec"]["backbone_weights"] is not None)
    model = build_detector(spec)
    model.load_state_dict(saved["model"])
    return model.to(device).eval()


def predict_samples(model: Any, samples: list[Sample], device: str,
                    ) -> list[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """``(image_id, xyxy float32, scores float32, model labels int64)`` for every sample."""
    import torch

    from tinyset_builder.progress import track

    out = []
    with torch.inference_mode():
        for s in track(samples, f"predicting {len(samples)} images"):
            res = model([read_tensor(s.path).to(device)])[0]
            out.append((s.image_id, res["boxes"].cpu().numpy().astype(np.float32),
                        res["scores"].cpu().numpy().astype(np.float32),
                        res["labels"].cpu().numpy().astype(np.int64)))
    return out
