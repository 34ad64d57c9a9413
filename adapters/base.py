"""The one small protocol every framework adapter implements.

The runner gives an adapter a :class:`Job` (which method, which training file, which images to
predict, where to work) and asks three things:

1. :meth:`Adapter.unavailable` — can this run here? ``None`` if yes, otherwise one line saying what
   is missing and how to get it (the run is then stored as ``unavailable: ...``, never faked);
2. :meth:`Adapter.train` — train on ``job.train_json`` (and ``job.unlabeled_json`` for semi
   settings), return notes for the results file (e.g. ``{"weights": "random init (offline)"}``);
3. :meth:`Adapter.predict` — return :class:`Detections` for every image of ``job.eval_json``
   (with ``job.prompts_json`` for point-prompted methods).

Frameworks are imported inside these methods, never at module import, so the runner can list
and plan every method without torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

Schedule = Literal["paper", "smoke", "cpu"]


@dataclass(frozen=True, slots=True)
class Detections:
    """Detections of one image, in the image's pixels.

    Attributes:
        image_id: the COCO image id.
        xyxy: ``(N, 4)`` float32 boxes ``[x0, y0, x1, y1]``.
        scores: ``(N,)`` float32 confidences.
        labels: ``(N,)`` int64 COCO category ids of the dataset.
    """

    image_id: int
    xyxy: npt.NDArray[np.float32]
    scores: npt.NDArray[np.float32]
    labels: npt.NDArray[np.int64]

    def __post_init__(self) -> None:
        n = len(self.scores)
        if self.xyxy.shape != (n, 4) or self.labels.shape != (n,):
            raise ValueError(f"image {self.image_id}: xyxy {self.xyxy.shape}, scores ({n},) and "
                             f"labels {self.labels.shape} disagree")

    @classmethod
    def empty(cls, image_id: int) -> Detections:
        """No detections for ``image_id``."""
        return cls(image_id, np.zeros((0, 4), np.float32), np.zeros(0, np.float32),
                   np.zeros(0, np.int64))

    def to_coco(self) -> list[dict[str, Any]]:
        """COCO results entries ``{image_id, category_id, bbox: [x, y, w, h], score}``."""
        out = []
        for (x0, y0, x1, y1), s, c in zip(self.xyxy.tolist(), self.scores.tolist(),
                                          self.labels.tolist(), strict=True):
            out.append({"image_id": self.image_id, "category_id": int(c),
                        "bbox": [x0, y0, x1 - x0, y1 - y0], "score": s})
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    """Everything an adapter needs for one run (one method × setting × dataset × seed).

    Attributes:
        method: the method's manifest entry as a plain mapping (``id``, ``name``, ``adapter``,
            ``options`` ...); adapters read their own keys from ``method["options"]``.
        data_dir: the built dataset (``images/<split>/...``, ``annotations/<split>.json``).
        train_json: COCO file to train on (the derived variant for label-efficient settings).
        unlabeled_json: COCO file of unlabeled training images (semi settings), else None.
        eval_json: COCO file of the images to predict (the test split by default).
        prompts_json: P2SOD prompt file for point-prompted methods, else None.
        work_dir: a private folder for checkpoints, exported data and logs (resumable).
        schedule: ``"paper"`` (the paper's 1× = 3 epochs at 1024²), ``"smoke"`` (plumbing only)
            or ``"cpu"`` (a compute budget of ``extra["minutes"]`` CPU-minutes, CPU-sized inputs
            and one light backbone for every torchvision-based row; :mod:`baselines.schedules`).
        seed: random seed.
        device: ``"cuda"``, ``"cuda:1"`` or ``"cpu"``.
        env_python: interpreter of a user-named environment for subprocess adapters.
    """

    method: Mapping[str, Any]
    data_dir: Path
    train_json: Path
    eval_json: Path
    work_dir: Path
    unlabeled_json: Path | None = None
    prompts_json: Path | None = None
    schedule: Schedule = "paper"
    seed: int = 0
    device: str = "cpu"
    env_python: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def options(self) -> Mapping[str, Any]:
        """The method's adapter options from the manifest."""
        return self.method.get("options", {})


def cuda_unavailable(device: str) -> str | None:
    """Why ``device`` cannot be used here (a CUDA device without CUDA), or None if it can."""
    if not device.startswith("cuda"):
        return None
    import torch

    if not torch.cuda.is_available():
        return f"device {device} requested but CUDA is not available here"
    return None


class Adapter(Protocol):
    """What the runner calls; see the module docstring."""

    def unavailable(self, job: Job) -> str | None:
        """``None`` when the job can run here, else what is missing and how to get it."""
        ...

    def train(self, job: Job) -> dict[str, Any]:
        """Train (resuming from ``job.work_dir`` if a checkpoint is there); return notes."""
        ...

    def predict(self, job: Job) -> Sequence[Detections]:
        """Detections for every image of ``job.eval_json``."""
        ...
