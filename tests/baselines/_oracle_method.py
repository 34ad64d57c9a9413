"""A method module following the native contract that answers with the ground truth (tests)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from baselines.data import load_samples
from baselines.methods import MethodContext, Prediction


@dataclass(frozen=True)
class Config:
    """One option, to check that settings reach the method's config."""

    jitter: float = 0.0


def train(ctx: MethodContext) -> dict:
    return {"jitter": ctx.config(Config).jitter, "plan": ctx.plan.label(),
            "unlabeled": str(ctx.unlabeled_json)}


def predict(ctx: MethodContext) -> list[Prediction]:
    samples, _ = load_samples(ctx.eval_json, ctx.data_dir)
    return [(s.image_id, s.boxes, np.ones(len(s.boxes), np.float32),
             np.ones(len(s.boxes), np.int64)) for s in samples]
