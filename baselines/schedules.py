"""Training schedules: ``paper``, ``smoke`` and the budgeted ``cpu`` schedule.

* ``paper`` — the paper's: 1× = 3 epochs over the training images at 1024², SGD, ResNet-50-FPN.
* ``smoke`` — plumbing only: 10 iterations on whole tiles resized to 128².
* ``cpu`` — a **compute budget** per run, so a label-efficient method and its plain baseline get the
  same compute whatever their per-step cost. The budget is given in CPU-minutes and spent in
  floating-point operations: the first training step is counted with
  :class:`torch.utils.flop_counter.FlopCounterMode` (forward and backward, every model the method
  runs in a step, e.g. a teacher), and the run gets
  ``⌊budget · REFERENCE_FLOPS_PER_CPU_SECOND / flops_per_step⌋`` steps. Counting operations instead
  of reading a clock makes the run deterministic (same seed and thread count → same weights), and
  the measured CPU seconds are recorded beside it. Inputs are CPU-sized (random ``crop²`` crops of
  the 1024² tiles for training, whole tiles at test), and every torchvision-based row shares one
  light backbone (ResNet-18-FPN with a stride-4 level, 64 channels, random initialisation unless
  local weights are given) and one optimiser (AdamW, which learns from scratch in a short budget
  where SGD barely moves).

Every value can be overridden per run through the manifest's ``options`` or the job's ``extra``
(``crop``, ``batch_size``, ``lr``, ``optimizer``, ``backbone``, ``fpn_channels``, ``roi_batch``,
``test_proposals``, ``iterations``, ``minutes``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from tinyset_builder.errors import TinysetError

SCHEDULES = ("paper", "smoke", "cpu")
PAPER_SIZE = 1024
#: Floating-point operations one CPU core does per second in a detector's training step: measured
#: for the cpu schedule's ResNet-18-FPN Faster R-CNN on 256² crops, 1 thread, on the 2-core
#: development machine (54–55 GFLOP/s; FCOS and RetinaNet run 70–88 GFLOP/s, so their real CPU
#: time is below the nominal budget). ``python benchmarks/cpu_schedule.py --calibrate``.
REFERENCE_FLOPS_PER_CPU_SECOND = 55e9
#: The ``cpu`` schedule's default budget.
DEFAULT_CPU_MINUTES = 4.0

#: Supervised augmentations of the plain detectors' training views (``TrainPlan.augment``;
#: :func:`baselines.data.training_batch`).
AUGMENTS = ("none", "flip_colour")


@dataclass(frozen=True, slots=True)
class TrainPlan:
    """How one run trains (hashed with the data to decide whether a model can be reused).

    Attributes:
        schedule: ``paper``, ``smoke`` or ``cpu``.
        crop: side of the random training crops (None: whole images, resized to ``test_size``).
        test_size: side the detector sees at test (the tiles' own 1024, or smaller to resize).
        iterations: fixed step count; None when it follows from ``budget_minutes``.
        budget_minutes: compute budget in reference CPU-minutes (``cpu`` schedule).
        batch_size: images (crops) per step.
        optimizer: ``sgd`` or ``adamw``.
        lr: base learning rate.
        backbone: ``resnet50`` / ``resnet18`` / ``resnet34``.
        fpn_channels: FPN width.
        roi_batch: RoIs sampled per image in Faster R-CNN's box head.
        test_proposals: RPN proposals kept per test image.
        backbone_weights: local ImageNet weights file, or None.
        anchor_base: Faster R-CNN's anchor side on P2 in px, doubling per level (8: ours, sized
            to tiny objects; 32: mmdet's default scale 8 × stride 4).
        first_level: RetinaNet's and FCOS's lowest pyramid level (2: P2–P7, ours; 3: P3–P7,
            mmdet's default and the paper's FCOS baseline).
        norm_eval: keep every batch-norm layer in eval mode while training (mmdet's
            ``norm_eval=True``): the running statistics stay those the model started with and
            augmented views cannot shift them. For runs that start from a trained model.
        augment: supervised augmentation of the plain detectors' views
            (:data:`AUGMENTS`: ``none``, or ``flip_colour``, the teacher–student
            methods' labelled branch).
    """

    schedule: str
    crop: int | None
    test_size: int
    iterations: int | None
    budget_minutes: float | None
    batch_size: int
    optimizer: str
    lr: float
    backbone: str
    fpn_channels: int
    roi_batch: int
    test_proposals: int
    backbone_weights: str | None = None
    anchor_base: int = 8
    first_level: int = 2
    norm_eval: bool = False
    augment: str = "none"

    def as_dict(self) -> dict[str, Any]:
        """Plain mapping (results files, checkpoints)."""
        return asdict(self)

    def steps_for(self, flops_per_step: float) -> int:
        """Steps the budget buys at ``flops_per_step`` (the fixed count when one is set)."""
        if self.iterations is not None:
            return self.iterations
        assert self.budget_minutes is not None
        flops = self.budget_minutes * 60.0 * REFERENCE_FLOPS_PER_CPU_SECOND
        return max(1, math.floor(flops / max(flops_per_step, 1.0)))

    def label(self) -> str:
        """What the report's schedule column shows, e.g. ``cpu 4 min``."""
        return schedule_label(self.schedule, self.budget_minutes)


def schedule_label(schedule: str, minutes: float | None = None) -> str:
    """``paper``, ``smoke`` or ``cpu M min`` (the default budget when ``minutes`` is None)."""
    if schedule != "cpu":
        return schedule
    return f"cpu {float(DEFAULT_CPU_MINUTES if minutes is None else minutes):g} min"


def resolve_plan(schedule: str, settings: Mapping[str, Any], *, n_images: int,
                 epochs: float = 3.0) -> TrainPlan:
    """The plan of a run: the schedule's defaults overridden by ``settings`` (options + extra).

    Raises:
        TinysetError: an unknown schedule or optimizer.
    """
    if schedule not in SCHEDULES:
        raise TinysetError(f"unknown schedule {schedule!r}; choose {', '.join(SCHEDULES)}")
    batch = int(settings.get("batch_size", 2))
    if schedule == "paper":
        base = TrainPlan(schedule, crop=None, test_size=PAPER_SIZE,
                         iterations=max(1, math.ceil(epochs * math.ceil(n_images / batch))),
                         budget_minutes=None, batch_size=batch, optimizer="sgd", lr=0.005,
                         backbone="resnet50", fpn_channels=256, roi_batch=512,
                         test_proposals=3000)
    elif schedule == "smoke":
        size = int(settings.get("smoke_size", 128))
        base = TrainPlan(schedule, crop=None, test_size=size,
                         iterations=int(settings.get("smoke_iters", 10)), budget_minutes=None,
                         batch_size=batch, optimizer="sgd",
                         lr=float(settings.get("smoke_lr", 0.01)),
                         backbone="resnet50", fpn_channels=256, roi_batch=64, test_proposals=500)
    else:
        minutes = float(settings.get("minutes", DEFAULT_CPU_MINUTES))
        if minutes <= 0:
            raise TinysetError(f"cpu schedule: budget must be positive, got {minutes} minutes")
        base = TrainPlan(schedule, crop=256, test_size=PAPER_SIZE, iterations=None,
                         budget_minutes=minutes, batch_size=batch, optimizer="adamw", lr=1e-3,
                         backbone="resnet18", fpn_channels=64, roi_batch=128,
                         test_proposals=1000)
    plan = replace(base, **{k: _cast(k, settings[k]) for k in _OVERRIDABLE if k in settings})
    if plan.optimizer not in ("sgd", "adamw"):
        raise TinysetError(f"unknown optimizer {plan.optimizer!r}; choose sgd or adamw")
    if plan.augment not in AUGMENTS:
        raise TinysetError(f"unknown augment {plan.augment!r}; choose {', '.join(AUGMENTS)}")
    return plan


_OVERRIDABLE = ("crop", "test_size", "iterations", "optimizer", "lr", "backbone", "fpn_channels",
                "roi_batch", "test_proposals", "backbone_weights", "anchor_base", "first_level",
                "norm_eval", "augment")


def _cast(key: str, value: Any) -> Any:
    if key in ("optimizer", "backbone", "augment"):
        return str(value)
    if key == "backbone_weights":
        return str(value) if value else None
    if key == "lr":
        return float(value)
    if key == "norm_eval":
        if not isinstance(value, bool):
            raise TinysetError(f"norm_eval must be true or false, got {value!r}")
        return value
    return None if value is None else int(value)


def lr_factor(it: int, total: int, warmup: int) -> float:
    """Linear warm-up from 0.001×, then ×0.1 at 2/3 and 8/9 of the run (mmdet's 8/11 of 12)."""
    if it < warmup:
        return 0.001 + (1 - 0.001) * it / max(warmup, 1)
    return 0.1 ** ((it >= total * 2 / 3) + (it >= total * 8 / 9))


def warmup_steps(total: int) -> int:
    """Warm-up length: a fifth of the run, at least 1 and at most 500 steps (mmdet's 500).

    Step 0 is always warm-up, so its learning rate does not depend on the run's length, which a
    ``cpu`` run only knows after counting that step.
    """
    return max(1, min(500, total // 5))
