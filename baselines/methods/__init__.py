"""Table I's label-efficient methods, one module each, behind one small contract.

Each ``baselines/methods/<name>.py`` opens with the paper and the authors' repository (commit) it
follows and defines:

* ``Config`` — a frozen dataclass with the paper's defaults (overridable from ``ctx.settings``);
* ``train(ctx) -> dict`` — trains (resumable; a finished model with an unchanged configuration is
  reused) and returns notes for the results file;
* ``predict(ctx) -> list[(image_id, xyxy, scores, category_ids)]`` — for every image of
  ``ctx.eval_json``; :func:`predict_saved` serves methods whose product is a saved detector.

:data:`METHODS` maps a method's name (the manifest's ``options.method``) to its module, imported
only when a run needs it (``adapters/native.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from importlib import import_module
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from baselines.schedules import TrainPlan
from tinyset_builder.errors import TinysetError

#: Method name -> module. One line per method.
METHODS: dict[str, str] = {
    "p2bnet": "baselines.methods.p2bnet",
    "point_teacher": "baselines.methods.point_teacher",
    "pointobb_v2": "baselines.methods.pointobb_v2",
    "pointobb_v3": "baselines.methods.pointobb_v3",
    "point2rbox_v3": "baselines.methods.point2rbox_v3",
    "rfla": "baselines.methods.rfla",
    "hs_fpn": "baselines.methods.hs_fpn",
    "dn_tod": "baselines.methods.dn_tod",
    "ssd_det": "baselines.methods.ssd_det",
    "soft_teacher": "baselines.methods.soft_teacher",
    "pseco": "baselines.methods.pseco",
    "co_mining": "baselines.methods.co_mining",
    "calibrated_teacher": "baselines.methods.calibrated_teacher",
}

Prediction = tuple[int, np.ndarray, np.ndarray, np.ndarray]


@dataclass(frozen=True, slots=True)
class MethodContext:
    """Everything a method needs for one run (built from a benchmark job by the native adapter).

    Attributes:
        train_json: labelled training file (the variant's for label-efficient settings).
        unlabeled_json: unlabelled training images (semi settings), else None.
        eval_json: images to predict.
        data_dir: the built dataset.
        work_dir: private folder for checkpoints and models.
        plan: the schedule (:func:`baselines.schedules.resolve_plan`).
        settings: the manifest's options with the job's extra on top.
        seed: random seed.
        device: ``cpu`` / ``cuda`` / ``cuda:1``.
    """

    train_json: Path
    unlabeled_json: Path | None
    eval_json: Path
    data_dir: Path
    work_dir: Path
    plan: TrainPlan
    settings: Mapping[str, Any]
    seed: int
    device: str

    def setting(self, key: str, default: Any = None) -> Any:
        """One option (manifest options, overridden by the job's extra)."""
        return self.settings.get(key, default)

    def config(self, cls: type) -> Any:
        """``cls`` (a method's ``Config`` dataclass) with every field found in the settings."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in self.settings.items() if k in names})


def get_method(name: str) -> ModuleType:
    """The module of method ``name``.

    Raises:
        TinysetError: an unknown name (lists the known ones).
    """
    if name not in METHODS:
        raise TinysetError(f"unknown method {name!r} (known: {', '.join(sorted(METHODS))})")
    return import_module(METHODS[name])


def predict_saved(ctx: MethodContext, file_name: str = "model.pt") -> list[Prediction]:
    """Predict ``ctx.eval_json`` with the detector a method saved (``save_model``) in work_dir.

    Class-agnostic models label every detection with the evaluation file's first category id.
    """
    from baselines.data import load_samples
    from baselines.supervised import load_for_test, predict_samples, read_saved
    from tinyset_builder.io import read_json

    path = ctx.work_dir / file_name
    if not path.is_file():
        raise TinysetError(f"{path}: no trained model; train first")
    saved = read_saved(path)
    model = load_for_test(saved, ctx.plan.test_size, ctx.device)
    ids = sorted(int(c["id"]) for c in read_json(ctx.eval_json).get("categories", []))
    if not ids:
        raise TinysetError(f"{ctx.eval_json}: no categories")
    samples, _ = load_samples(ctx.eval_json, ctx.data_dir, class_agnostic=True)
    return [(i, xyxy, scores, np.full(len(scores), ids[0], np.int64))
            for i, xyxy, scores, _ in predict_samples(model, samples, ctx.device)]
